"""Specs: canonical JSON, run ids and flat fields of frozen dataclass specs.

A spec is a frozen dataclass; its canonical JSON (:func:`canonical_json`) hashes to a run id such
as ``distill-3fa9c1e07b2d4a11`` (:func:`spec_id`). A field added to a spec class after runs were
stored is declared with :func:`added_field`: at its default it is left out of the canonical JSON,
so the stored runs keep their ids. The run store (:mod:`ptmdd_helpers.store`) builds on these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

KIND_KEY = "__kind__"

# Annotations (as written, ``from __future__ import annotations`` keeps them strings) of fields
# whose integer values are encoded as floats, so that ``lr=1`` and ``lr=1.0`` give one run id.
_FLOAT_ANNOTATIONS = {"float", "float | None", "Optional[float]"}
_FLOAT_TUPLE_ANNOTATIONS = {"tuple[float, ...]", "Tuple[float, ...]"}
# Field metadata key of :func:`added_field`.
OMIT_AT_DEFAULT = "omit_at_default"


def added_field(default: object) -> Any:
    """A spec field added after runs were stored: while it holds ``default`` it is left out of the
    spec's JSON, so the runs stored before it existed keep their ids."""
    return dataclasses.field(default=default, metadata={OMIT_AT_DEFAULT: True})


# --------------------------------------------------------------------------- canonical specs


def _annotation_name(annotation: object) -> str:
    """The annotation as a string (``float`` -> ``"float"``), whatever the annotation style."""
    if isinstance(annotation, str):
        return annotation.replace("typing.", "").strip()
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _encode(value: object, where: str, annotation: str | None = None) -> object:
    """Turn a spec (or one of its values) into plain JSON data; ``where`` names it in errors."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if annotation in _FLOAT_ANNOTATIONS and type(value) is int:
            return float(value)
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}; spec values must be finite numbers")
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        encoded: dict[str, object] = {KIND_KEY: type(value).__name__}
        for item in dataclasses.fields(value):
            if item.name == KIND_KEY:
                raise TypeError(f"{where}: a field may not be called {KIND_KEY!r}")
            if item.metadata.get(OMIT_AT_DEFAULT) and getattr(value, item.name) == item.default:
                continue
            encoded[item.name] = _encode(
                getattr(value, item.name), f"{where}.{item.name}", _annotation_name(item.type)
            )
        return encoded
    if isinstance(value, (tuple, list)):
        inner = "float" if annotation in _FLOAT_TUPLE_ANNOTATIONS else None
        return [_encode(v, f"{where}[{i}]", inner) for i, v in enumerate(value)]
    if isinstance(value, dict):
        encoded = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}; spec dict keys must be strings")
            encoded[key] = _encode(v, f"{where}.{key}")
        return encoded
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r}); spec values must be None, bool, int, "
        "float, str, Path, tuples/lists, dicts with string keys or dataclasses"
    )


def spec_data(spec: object) -> dict:
    """Return ``spec`` (a dataclass, or its stored JSON data) as the plain data of its JSON."""
    encoded = _encode(spec, type(spec).__name__)
    if not isinstance(encoded, dict) or KIND_KEY not in encoded:
        raise TypeError(
            f"a spec must be a dataclass instance (or its stored data with {KIND_KEY!r}), "
            f"not {type(spec).__name__}"
        )
    return encoded


def canonical_json(spec: object) -> str:
    """Canonical JSON of a spec: ``__kind__`` at each dataclass, sorted keys, no whitespace."""
    return json.dumps(
        spec_data(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    )


def kind_slug(name: str) -> str:
    """Kind slug of a class name: lowercase, trailing "spec" removed (``DistillSpec``: distill)."""
    slug = name.lower()
    if slug.endswith("spec") and len(slug) > len("spec"):
        slug = slug[: -len("spec")]
    return slug


def spec_kind(spec: object) -> str:
    """The kind slug of a spec (a dataclass or its stored data)."""
    if isinstance(spec, dict):
        if KIND_KEY not in spec:
            raise TypeError(f"stored spec data has no {KIND_KEY!r} entry")
        return kind_slug(str(spec[KIND_KEY]))
    return kind_slug(type(spec).__name__)


def spec_id(spec: object) -> str:
    """Run id of a spec: ``<kind slug>-<first 16 hex chars of sha256(canonical_json(spec))>``."""
    digest = hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
    return f"{spec_kind(spec)}-{digest[:16]}"


def _flatten(data: object, prefix: str, out: dict[str, object], top: bool) -> None:
    """Flatten encoded spec data into ``out`` (dotted names, lists as tuples)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == KIND_KEY:
                if not top:
                    out[f"{prefix}.{KIND_KEY}"] = value
                continue
            _flatten(value, f"{prefix}.{key}" if prefix else key, out, False)
    elif isinstance(data, list):
        out[prefix] = to_tuple(data)
    else:
        out[prefix] = data


def to_tuple(value: object) -> object:
    """Lists (nested too) as tuples."""
    if isinstance(value, list):
        return tuple(to_tuple(v) for v in value)
    return value


def spec_fields(spec: object) -> dict[str, object]:
    """Flat dict of a spec's fields: nested as ``"parent.child"``, tuples kept as tuples.

    A nested dataclass also gives ``"parent.__kind__"`` (its class name); a nested spec that is
    ``None`` gives ``"parent": None``. Works on a dataclass or on its stored JSON data.
    """
    out: dict[str, object] = {}
    _flatten(spec_data(spec), "", out, True)
    return out
