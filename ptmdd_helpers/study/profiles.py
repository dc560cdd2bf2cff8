"""Profiles: load ``parameters/<profile>.yaml``, merge ``shared`` into each notebook, apply overrides.

A profile has a ``shared`` section and one section per notebook. A notebook's parameters are
``shared`` deep-merged with its own section, then the ``--set key=value`` overrides (values parsed
as YAML; dotted keys reach into nested sections; a key that starts with a notebook name is limited
to that notebook, one that starts with ``shared.`` or none applies to all). The result is checked
against :mod:`.schema`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..paths import project_root
from . import schema

NOTEBOOKS = (
    "00_preliminary", "01_initialization", "02_architecture", "03_epoch", "04_domain",
    "05_alpha", "06_cross_architecture",
)


class StudyError(ValueError):
    """A profile, grid or batch cannot be run as asked."""


Overrides = Iterable[str] | Mapping[str, Any] | None


def profile_path(profile: str | Path) -> Path:
    """The YAML file of ``profile``: a path, or ``<project>/parameters/<profile>.yaml``."""
    candidate = Path(profile).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if candidate.is_file():
            return candidate
        raise StudyError(f"no profile file {candidate}; give an existing .yaml file or the name "
                         "of a profile in parameters/")
    path = project_root() / "parameters" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (project_root() / "parameters").glob("*.yaml"))
        raise StudyError(f"unknown profile {str(profile)!r}; known: {', '.join(known) or 'none'} "
                         "(or give the path of a .yaml file)")
    return path


def profile_name(profile: str | Path) -> str:
    """The profile's name: the file's stem for a path, else the name itself."""
    return Path(profile).stem if str(profile).endswith((".yaml", ".yml")) else str(profile)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in: nested mappings merge, anything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value as YAML: ``3``, ``[1, 2]``, ``{a: 1}``, ``null``, text)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise StudyError(f"--set expects key=value, got {text!r}; e.g. --set seeds=[0,1,2]")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise StudyError(f"--set {text}: the value is not valid YAML ({error.problem}); quote "
                         "text and write lists as [a, b]") from None


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``target[a][b][c] = value`` for ``key = "a.b.c"``, creating sections as needed."""
    parts = key.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def override_pairs(overrides: Overrides) -> list[tuple[str, Any]]:
    """``overrides`` (``key=value`` strings, a mapping, or pairs) as a list of (key, value)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    return [parse_override(item) if isinstance(item, str) else tuple(item) for item in overrides]


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StudyError(f"{path} is not valid YAML{where}: {getattr(error, 'problem', error)}; "
                         "fix the file (indentation, a missing colon or bracket)") from None
    except OSError as error:
        raise StudyError(f"cannot read the profile {path}: {error.strerror}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path} must be a mapping of sections (shared, {', '.join(NOTEBOOKS)})")
    unknown = sorted(set(raw) - {"shared", *NOTEBOOKS})
    if unknown:
        raise StudyError(f"{path}: unknown sections {unknown}; valid: shared, {', '.join(NOTEBOOKS)}")
    for section, values in raw.items():
        if values is not None and not isinstance(values, dict):
            raise StudyError(f"{path}: the section {section!r} must be a mapping of keys")
    return raw


def load_profile(profile: str | Path, overrides: Overrides = None) -> dict[str, dict[str, Any]]:
    """Every notebook's merged, validated parameters: ``shared`` ⊕ its section ⊕ overrides."""
    path = profile_path(profile)
    raw = _read(path)
    shared = dict(raw.get("shared") or {}, profile=profile_name(profile))
    merged = {nb: deep_merge(shared, raw.get(nb) or {}) for nb in NOTEBOOKS}
    own = {nb: copy.deepcopy(raw.get(nb) or {}) for nb in NOTEBOOKS}  # a notebook's own keys
    for key, value in override_pairs(overrides):
        head, _, rest = key.partition(".")
        if head in NOTEBOOKS:
            if not rest:
                raise StudyError(f"--set {key}=…: name a parameter after the notebook")
            set_dotted(merged[head], rest, copy.deepcopy(value))
            set_dotted(own[head], rest, copy.deepcopy(value))
        else:
            inner = rest if head == "shared" else key
            if not inner:
                raise StudyError("--set shared=…: name a parameter after 'shared.'")
            for params in merged.values():
                set_dotted(params, inner, copy.deepcopy(value))
    where = f"profile {profile_name(profile)} ({path})"
    try:
        validated = schema.validate(merged, where)
    except ValueError as error:
        raise StudyError(str(error)) from None
    unused = [f"{nb}.{key} (its methods: {', '.join(validated[nb].get('methods', [])) or 'none'})"
              for nb in NOTEBOOKS for key in _unrun_method_keys(own[nb], validated[nb].get("methods", []))]
    if unused:
        raise StudyError(
            f"{where}: {'; '.join(unused)}: a value for a method that the notebook does not run "
            f"would be ignored. Add the method to the notebook's methods, move the value to "
            f"shared (the defaults of every notebook), or drop it")
    return validated


def _unrun_method_keys(section: Mapping[str, Any], methods: Iterable[str]) -> list[str]:
    """The keys of a notebook's own section that set a value for a registered method it does not
    run (``alpha.MTT``, ``distill.DC``, ``eval.DSA`` where its methods are [DM])."""
    from ..distill import REGISTRY

    found = []
    for table in ("alpha", "distill", "eval"):
        values = section.get(table)
        if isinstance(values, Mapping):
            found += [f"{table}.{key}" for key in values
                      if isinstance(key, str) and key.upper() in REGISTRY and key.upper() not in methods]
    return found


def notebook_parameters(
    notebook: str, profile: str | Path = "smoke", overrides: Overrides = None,
) -> dict[str, Any]:
    """The merged parameters of one notebook in ``profile``."""
    if notebook not in NOTEBOOKS:
        raise StudyError(f"unknown notebook {notebook!r}; valid: {', '.join(NOTEBOOKS)}")
    return load_profile(profile, overrides)[notebook]


def select_notebooks(only: Iterable[str] | str | None) -> list[str]:
    """The notebooks ``only`` names (full names, numbers ``03`` or names ``epoch``), in order."""
    if not only:
        return list(NOTEBOOKS)
    if isinstance(only, str):
        only = [part.strip() for part in only.split(",") if part.strip()]
    chosen = []
    for name in only:
        matches = [nb for nb in NOTEBOOKS if name in (nb, *nb.split("_", 1))]
        if not matches:
            raise StudyError(f"unknown notebook {name!r}; valid: {', '.join(NOTEBOOKS)} "
                             "(or their numbers, e.g. --only 03,04)")
        chosen += matches
    return [nb for nb in NOTEBOOKS if nb in chosen]
