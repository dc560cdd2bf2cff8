"""The study: profiles, one grid of runs per research question, executors, and the papermill batch.

A profile (``parameters/<profile>.yaml``) has a ``shared`` section and one section per notebook;
a notebook's parameters are ``shared`` deep-merged with its own section, then ``--set key=value``
overrides (values parsed as YAML; dotted keys reach into nested sections; a key that starts with a
notebook name, or ``shared.``, is limited to that notebook, or applies to all).

A :class:`Grid` lists what a notebook needs: pool members (trained on demand through
:func:`ptmdd_helpers.pools.train_member`) and evaluations (:class:`EvaluationSpec`) whose subjects
are distillations, random real subsets or the whole training set. :func:`run` computes what the
store lacks (pools, then distillations, then evaluations; each task is one spec, idempotent through
the store's file locks) with the ``local`` executor (N spawned worker processes) or ``slurm``
(submitit), then returns a tidy frame: one row per evaluated network, every spec field a column,
plus the grid's labels (``condition``, ``n_models``, ...). :func:`run_study` runs a whole profile:
every grid first (all notebooks' tasks together), then papermill on each notebook, then the index.

Paths: the store is ``store`` (a profile key), else ``$PTMDD_RUNS``, else ``<project>/runs/store``;
pools ``pool_root``, else ``$PTMDD_POOLS``, else ``<project>/runs/pools``; data ``$PTMDD_DATA``,
else ``data_root`` (relative to the project), else ``./data``; figures ``figures_dir``, else
``<project>/figures/<profile>``; executed notebooks and submitit logs under ``runs_dir``, else
``<project>/runs/<profile>``.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .data import get_info
from .distill import METHODS, DistillSpec, make_spec
from .guidance import DEFAULT_CCLOM_REAL_BATCH, GuidanceSpec
from .pools import (
    MemberSpec,
    TrainRecipe,
    initial_path,
    read_member_log,
    recipe_identity,
    resolve_pool_root,
    write_initial_checkpoint,
)

if TYPE_CHECKING:
    import pandas as pd

    from .runs import EvaluationSpec, Workspace

NOTEBOOKS = (
    "00_preliminary", "01_initialization", "02_architecture", "03_epoch", "04_domain",
    "05_alpha", "06_cross_architecture",
)
RUNTIME_KEYS = (
    "profile", "store", "pool_root", "data_root", "figures_dir", "runs_dir", "device",
    "executor", "workers", "slurm",
)
EXECUTORS = ("local", "slurm")


class StudyError(ValueError):
    """A profile, grid or batch cannot be run as asked."""


# --------------------------------------------------------------------------- profiles


def project_root() -> Path:
    """The project folder: ``$PTMDD_PROJECT``, else the checkout holding this package, else cwd."""
    env = os.environ.get("PTMDD_PROJECT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parents[1]
    return here if (here / "parameters").is_dir() else Path.cwd()


def profile_path(profile: str | Path) -> Path:
    """The YAML file of ``profile``: a path, or ``<project>/parameters/<profile>.yaml``."""
    candidate = Path(profile).expanduser()
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = project_root() / "parameters" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (project_root() / "parameters").glob("*.yaml"))
        raise StudyError(f"unknown profile {str(profile)!r}; known: {', '.join(known) or 'none'}")
    return path


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
        raise StudyError(f"--set expects key=value, got {text!r}")
    return key.strip(), yaml.safe_load(value) if value.strip() else None


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


def _normalize_overrides(overrides: Iterable[str] | Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    return [parse_override(item) if isinstance(item, str) else tuple(item) for item in overrides]


def load_profile(
    profile: str | Path, overrides: Iterable[str] | Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every notebook's merged parameters: ``shared`` ⊕ its section ⊕ overrides (see module doc)."""
    path = profile_path(profile)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(raw) - {"shared", *NOTEBOOKS})
    if unknown:
        raise StudyError(f"{path}: unknown sections {unknown}; valid: shared, {', '.join(NOTEBOOKS)}")
    name = Path(profile).stem if str(profile).endswith((".yaml", ".yml")) else str(profile)
    shared = dict(raw.get("shared") or {}, profile=name)
    merged = {nb: deep_merge(shared, raw.get(nb) or {}) for nb in NOTEBOOKS}
    for key, value in _normalize_overrides(overrides):
        head, _, rest = key.partition(".")
        if head in NOTEBOOKS:
            if not rest:
                raise StudyError(f"--set {key}=…: name a parameter after the notebook")
            set_dotted(merged[head], rest, copy.deepcopy(value))
        else:
            inner = rest if head == "shared" else key
            if not inner:
                raise StudyError("--set shared=…: name a parameter after 'shared.'")
            for params in merged.values():
                set_dotted(params, inner, copy.deepcopy(value))
    return merged


def notebook_parameters(
    notebook: str, profile: str | Path = "smoke",
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The merged parameters of one notebook in ``profile``."""
    if notebook not in NOTEBOOKS:
        raise StudyError(f"unknown notebook {notebook!r}; valid: {', '.join(NOTEBOOKS)}")
    return load_profile(profile, overrides)[notebook]


# --------------------------------------------------------------------------- paths and workspace


def _resolve(path: str | Path | None) -> Path | None:
    if path is None or path == "":
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def store_root(params: Mapping[str, Any]) -> Path:
    """The run store folder of ``params`` (see the module docstring)."""
    env = os.environ.get("PTMDD_RUNS")
    return _resolve(params.get("store")) or (Path(env) if env else project_root() / "runs" / "store")


def pool_root(params: Mapping[str, Any]) -> Path:
    """The pool root of ``params`` (see the module docstring)."""
    env = os.environ.get("PTMDD_POOLS")
    return _resolve(params.get("pool_root")) or (
        Path(env) if env else project_root() / "runs" / "pools")


def data_root(params: Mapping[str, Any]) -> Path | None:
    """The data root: ``$PTMDD_DATA``, else the profile's ``data_root``, else ``None``."""
    env = os.environ.get("PTMDD_DATA")
    return Path(env).expanduser() if env else _resolve(params.get("data_root"))


def figures_dir(params: Mapping[str, Any]) -> Path:
    """Where the notebook writes figures and tables (``figures/<profile>`` by default)."""
    return _resolve(params.get("figures_dir")) or project_root() / "figures" / params["profile"]


def runs_dir(params: Mapping[str, Any]) -> Path:
    """Where executed notebooks and submitit logs go (``runs/<profile>`` by default)."""
    return _resolve(params.get("runs_dir")) or project_root() / "runs" / params["profile"]


def workspace(params: Mapping[str, Any]) -> Workspace:
    """The :class:`Workspace` (store, data, pools, device) that ``params`` name."""
    from .runs import Workspace
    from .store import RunStore

    return Workspace(RunStore(store_root(params)), data_root=data_root(params),
                     pool_root=pool_root(params), device=str(params.get("device", "auto")),
                     progress=False)


# --------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class PoolNeed:
    """A pool checkpoint a grid needs: member ``member`` at ``epoch`` (0: its initialization)."""

    member: MemberSpec
    epoch: int


@dataclass(frozen=True)
class GridItem:
    """One evaluation of a grid with its labels (condition, pool size, ...)."""

    spec: EvaluationSpec
    labels: tuple[tuple[str, Any], ...]


@dataclass
class Grid:
    """What one notebook needs: pool checkpoints and labelled evaluations."""

    notebook: str
    params: dict[str, Any]
    items: list[GridItem] = field(default_factory=list)
    needs: list[PoolNeed] = field(default_factory=list)

    def add(self, spec: EvaluationSpec, **labels: Any) -> None:
        """Add an evaluation with its labels."""
        self.items.append(GridItem(spec, tuple(labels.items())))

    @property
    def members(self) -> list[MemberSpec]:
        """Pool members to train (one per source, architecture and seed: the most epochs asked)."""
        return merge_members(n.member for n in self.needs if n.epoch > 0)

    @property
    def initial(self) -> list[MemberSpec]:
        """Members whose untrained initialization (epoch 0) is needed."""
        return merge_members(n.member for n in self.needs if n.epoch == 0)

    @property
    def distillations(self) -> list[DistillSpec]:
        """Distillations (unique, in order)."""
        return _unique(i.spec.subject for i in self.items if isinstance(i.spec.subject, DistillSpec))

    @property
    def evaluations(self) -> list[EvaluationSpec]:
        """Evaluation runs (unique, in order)."""
        return _unique(i.spec for i in self.items)

    @property
    def networks(self) -> int:
        """Evaluation networks to train in all."""
        return sum(spec.n_nets for spec in self.evaluations)


def merge_members(members: Iterable[MemberSpec]) -> list[MemberSpec]:
    """One member per (source, arch, seed), the one with the most epochs, in first-seen order.

    The epoch count is not part of a member's identity on disk: a member trained for 6 epochs
    holds the first 2 epochs that another notebook may ask for.
    """
    chosen: dict[tuple, MemberSpec] = {}
    for member in members:
        key = _member_key(member)
        if key not in chosen or member.recipe.epochs > chosen[key].recipe.epochs:
            chosen[key] = member
    return list(chosen.values())


def _unique(items: Iterable[Any]) -> list[Any]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _recipe(p: Mapping[str, Any]) -> TrainRecipe:
    raw = dict(p["pool"]["recipe"])
    raw["milestones"] = tuple(raw.get("milestones", ()))
    return TrainRecipe(**raw)


def _keep(p: Mapping[str, Any]) -> tuple[int, ...] | None:
    keep = p["pool"].get("keep_epochs")
    return tuple(sorted(int(e) for e in keep)) if keep is not None else None


def _epoch(p: Mapping[str, Any], epoch: Any) -> int:
    final = _recipe(p).epochs
    if epoch in (None, "final"):
        return final
    epoch = int(epoch)
    if not 0 <= epoch <= final:
        raise StudyError(f"PTM epoch {epoch} is outside 0 … {final} (the pool's recipe epochs)")
    keep = _keep(p)
    if keep is not None and epoch not in (*keep, 0, final):
        raise StudyError(f"PTM epoch {epoch} is not in pool.keep_epochs {list(keep)}")
    return epoch


def _alpha(p: Mapping[str, Any], method: str, ipc: int, value: Any = None) -> float:
    alpha = p.get("alpha", 100.0) if value is None else value
    if isinstance(alpha, Mapping):
        alpha = alpha.get(method, alpha.get("default", 100.0))
    if isinstance(alpha, Mapping):
        if ipc in alpha or str(ipc) in alpha:
            alpha = alpha.get(ipc, alpha.get(str(ipc)))
        else:
            nearest = min(alpha, key=lambda k: abs(int(k) - ipc))
            alpha = alpha[nearest]
    return float(alpha)


def _pool_alphas(p: Mapping[str, Any], method: str, ipc: int, archs: Sequence[str]) -> list[float]:
    """α per pool architecture from ``arch_alpha`` ({method: {arch: α}}) when given, else one α."""
    table = (p.get("arch_alpha") or {}).get(method)
    if table and len(archs) > 1:
        return [float(table.get(a, _alpha(p, method, ipc))) for a in archs]
    return [_alpha(p, method, ipc)]


def _guidance(
    p: Mapping[str, Any], grid: Grid, *, kind: str, source: str, archs: Sequence[str],
    n_models: int, epoch: Any, alphas: Sequence[float], ptm_only: bool = False,
) -> GuidanceSpec:
    """A guidance spec; its pool checkpoints are recorded in ``grid.needs``."""
    epoch = _epoch(p, epoch)
    recipe, keep = _recipe(p), _keep(p)
    for arch in archs:
        get_info(source)
        for seed in range(int(n_models)):
            grid.needs.append(PoolNeed(MemberSpec(source, arch, seed, recipe, keep), epoch))
    batch = int(p.get("cclom_real_batch", DEFAULT_CCLOM_REAL_BATCH))
    return GuidanceSpec(kind, source, tuple(archs), int(n_models), epoch,
                        tuple(float(a) for a in alphas),
                        batch if kind == "cclom" else DEFAULT_CCLOM_REAL_BATCH, ptm_only,
                        recipe_identity(recipe))  # epoch 0: "untrained" (GuidanceSpec)


def _pool_clom(
    p: Mapping[str, Any], grid: Grid, method: str, ipc: int, **changes: Any
) -> GuidanceSpec:
    """CLoM from the profile's ``pool`` on the target at the method's α, with ``changes`` applied."""
    pool = _pool(p)
    settings = {"kind": "clom", "source": p["target"], "archs": [pool["arch"]],
                "n_models": pool["n_models"], "epoch": pool.get("epoch"),
                "alphas": [_alpha(p, method, ipc)]}
    return _guidance(p, grid, **{**settings, **changes})


def _distill(
    p: Mapping[str, Any], method: str, ipc: int, seed: int, guidance: GuidanceSpec | None = None,
    dataset: str | None = None,
) -> DistillSpec:
    settings = dict(p.get("distill") or {})
    per_method = {m: settings.pop(m, None) or {} for m in METHODS}
    settings.update(per_method[method])
    return make_spec(dataset or p["target"], method, int(ipc), seed=int(seed), guidance=guidance,
                     **settings)


def protocol(p: Mapping[str, Any], method: str, **extra: Any) -> Any:
    """The evaluation protocol of ``method`` with the profile's ``eval`` overrides."""
    from .evaluate import protocol_for

    settings = {k: v for k, v in (p.get("eval") or {}).items()
                if k not in (*METHODS, "archs", "n_nets")}
    settings.update((p.get("eval") or {}).get(method) or {})
    settings.update(extra)
    return protocol_for(method, **settings)


def _evaluate(
    p: Mapping[str, Any], grid: Grid, subject: Any, method: str, archs: Sequence[str] | None = None,
    **labels: Any,
) -> None:
    from .runs import EvaluationSpec

    ev = p.get("eval") or {}
    archs = archs or ev.get("archs") or [getattr(subject, "model", None) or
                                        p["distill"].get("model", "ConvNet")]
    proto = protocol(p, method)
    for arch in archs:
        grid.add(EvaluationSpec(subject, arch, int(ev.get("n_nets", 1)), proto),
                 method=method, ipc=getattr(subject, "ipc", None), **labels)


def _pool(p: Mapping[str, Any]) -> Mapping[str, Any]:
    return p["pool"]


def _methods(p: Mapping[str, Any]) -> list[str]:
    return [m.upper() for m in p.get("methods", ["DM"])]


def _grid_preliminary(p: dict[str, Any]) -> Grid:
    grid, target = Grid("00_preliminary", p), p["target"]
    from .runs import EvaluationSpec, RealSubsetSpec, WholeDatasetSpec

    refs = p.get("references") or {}
    for ipc in p["ipcs"]:
        for method in _methods(p):
            for seed in p["seeds"]:
                _evaluate(p, grid, _distill(p, method, ipc, seed), method, condition="baseline")
                g = _pool_clom(p, grid, method, ipc)
                _evaluate(p, grid, _distill(p, method, ipc, seed, g), method, condition="+CLoM")
        if refs.get("random_real", True):
            for method in _methods(p):
                for seed in p["seeds"]:
                    _evaluate(p, grid, RealSubsetSpec(target, int(ipc), int(seed)), method,
                              condition="random real")
    whole = refs.get("whole")
    if whole:
        whole = dict(whole)
        n_nets, arch = int(whole.pop("n_nets", 1)), whole.pop("arch", None)
        arch = arch or ((p.get("eval") or {}).get("archs") or [None])[0] or p["distill"].get("model")
        grid.add(EvaluationSpec(WholeDatasetSpec(target), arch, n_nets,
                                protocol(p, whole.pop("method", "DC"), **whole)),
                 method="whole", ipc=None, condition="whole dataset")
    return grid


def _grid_initialization(p: dict[str, Any]) -> Grid:
    grid = Grid("01_initialization", p)
    for ipc in p["ipcs"]:
        for method in _methods(p):
            for seed in p["seeds"]:
                _evaluate(p, grid, _distill(p, method, ipc, seed), method, condition="baseline",
                          n_models=0)
                for n in p["n_models"]:
                    g = _pool_clom(p, grid, method, ipc, n_models=n)
                    _evaluate(p, grid, _distill(p, method, ipc, seed, g), method,
                              condition="+CLoM", n_models=int(n))
    return grid


def architecture_pools(p: Mapping[str, Any]) -> list[list[str]]:
    """The pools of 02: ``combinations``, else each architecture alone, then growing prefixes."""
    if p.get("combinations"):
        return [list(c) for c in p["combinations"]]
    archs = list(p["archs"])
    return [[a] for a in archs] + [archs[:k] for k in range(2, len(archs) + 1)]


def _grid_architecture(p: dict[str, Any]) -> Grid:
    grid = Grid("02_architecture", p)
    for ipc in p["ipcs"]:
        for method in _methods(p):
            for seed in p["seeds"]:
                _evaluate(p, grid, _distill(p, method, ipc, seed), method, condition="baseline",
                          pool="none", n_archs=0)
                for archs in architecture_pools(p):
                    g = _pool_clom(p, grid, method, ipc, archs=archs,
                                   alphas=_pool_alphas(p, method, ipc, archs))
                    _evaluate(p, grid, _distill(p, method, ipc, seed, g), method,
                              condition="+CLoM", pool="+".join(archs), n_archs=len(archs))
    return grid


def _grid_epoch(p: dict[str, Any]) -> Grid:
    grid = Grid("03_epoch", p)
    for ipc in p["ipcs"]:
        for method in _methods(p):
            for seed in p["seeds"]:
                _evaluate(p, grid, _distill(p, method, ipc, seed), method, condition="baseline",
                          ptm_epoch=None)
                for epoch in p["epochs"]:
                    g = _pool_clom(p, grid, method, ipc, epoch=epoch)
                    _evaluate(p, grid, _distill(p, method, ipc, seed, g), method,
                              condition="+CLoM", ptm_epoch=g.epoch)
    return grid


def _grid_domain(p: dict[str, Any]) -> Grid:
    grid = Grid("04_domain", p)
    pairs = p.get("pairs") or [{"target": p["target"], "other": p["other"]}]
    for pair in pairs:
        target, other = pair["target"], pair["other"]
        for ipc in p["ipcs"]:
            for method in _methods(p):
                alpha = _alpha(p, method, ipc)
                cclom_alpha = _alpha(p, method, ipc, p.get("cclom_alpha"))
                pool_epoch = _pool(p).get("epoch")
                conditions = [
                    ("CLoM (target PTMs)", "clom", target, pool_epoch, alpha),
                    ("CCLoM (target PTMs)", "cclom", target, pool_epoch, cclom_alpha),
                    ("CCLoM (other-domain PTMs)", "cclom", other, pool_epoch, cclom_alpha),
                    ("CCLoM (untrained PTMs)", "cclom", target, 0, cclom_alpha),
                ]
                if p.get("conditions"):  # a subset, by name (default: all four)
                    unknown = sorted(set(p["conditions"]) - {c[0] for c in conditions})
                    if unknown:
                        raise StudyError(
                            f"04_domain: unknown condition(s) {unknown}; valid: "
                            f"{', '.join(c[0] for c in conditions)}")
                    conditions = [c for c in conditions if c[0] in p["conditions"]]
                for seed in p["seeds"]:
                    _evaluate(p, grid, _distill(p, method, ipc, seed, dataset=target), method,
                              condition="baseline", target=target, ptm_source="none")
                    for name, kind, source, epoch, a in conditions:
                        g = _pool_clom(p, grid, method, ipc, kind=kind, source=source,
                                       epoch=epoch, alphas=[a])
                        _evaluate(p, grid, _distill(p, method, ipc, seed, g, dataset=target),
                                  method, condition=name, target=target,
                                  ptm_source=source if epoch != 0 else "untrained")
    return grid


def _grid_alpha(p: dict[str, Any]) -> Grid:
    grid = Grid("05_alpha", p)
    for ipc in p["ipcs"]:
        for method in _methods(p):
            for seed in p["seeds"]:
                for alpha in p["alphas"]:
                    g = None if float(alpha) == 0 else _pool_clom(p, grid, method, ipc,
                                                                   alphas=[alpha])
                    _evaluate(p, grid, _distill(p, method, ipc, seed, g), method,
                              condition="baseline" if g is None else "+CLoM", alpha=float(alpha),
                              ptm_only=False,
                              default_alpha=float(alpha) == _alpha(p, method, ipc))
                if p.get("ptm_only", True):
                    g = _pool_clom(p, grid, method, ipc, ptm_only=True)
                    _evaluate(p, grid, _distill(p, method, ipc, seed, g), method,
                              condition="PTM loss only", alpha=math.inf, ptm_only=True,
                              default_alpha=False)
    return grid


def _grid_cross_architecture(p: dict[str, Any]) -> Grid:
    grid, target = Grid("06_cross_architecture", p), p["target"]
    best = dict(p["best"])
    archs = list(p["eval_archs"])
    for ipc in p["ipcs"]:
        for method in _methods(p):
            alphas = ([_alpha(p, method, ipc, best["alpha"])] if best.get("alpha") is not None
                      else _pool_alphas(p, method, ipc, best["archs"]))
            for seed in p["seeds"]:
                _evaluate(p, grid, _distill(p, method, ipc, seed), method, archs,
                          condition="baseline")
                g = _guidance(p, grid, kind=best.get("kind", "clom"),
                              source=best.get("source") or target, archs=best["archs"],
                              n_models=best["n_models"], epoch=best.get("epoch"), alphas=alphas)
                _evaluate(p, grid, _distill(p, method, ipc, seed, g), method, archs,
                          condition="best options")
    return grid


GRID_BUILDERS = {
    "00_preliminary": _grid_preliminary,
    "01_initialization": _grid_initialization,
    "02_architecture": _grid_architecture,
    "03_epoch": _grid_epoch,
    "04_domain": _grid_domain,
    "05_alpha": _grid_alpha,
    "06_cross_architecture": _grid_cross_architecture,
}


def build_grid(notebook: str, params: Mapping[str, Any]) -> Grid:
    """The grid of ``notebook`` for its merged ``params``."""
    if notebook not in GRID_BUILDERS:
        raise StudyError(f"unknown notebook {notebook!r}; valid: {', '.join(NOTEBOOKS)}")
    try:
        return GRID_BUILDERS[notebook](dict(params))
    except KeyError as error:
        raise StudyError(f"{notebook}: the profile lacks the parameter {error}") from None


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """One unit of work: ``member`` (train), ``init`` (epoch-0 checkpoint), ``distill``, ``evaluation``."""

    kind: str
    spec: Any

    @property
    def key(self) -> str:
        """A readable unique key."""
        if self.kind in ("member", "init"):
            s = self.spec
            return f"{self.kind}:{s.source}/{s.arch}/seed{s.seed}"
        from .store import spec_id

        return spec_id(self.spec)


def member_complete(member: MemberSpec, root: Path) -> bool:
    """Whether ``member`` has completed its recipe's epochs under ``root``."""
    try:
        log = read_member_log(member, root)
    except (OSError, ValueError, KeyError):  # a log being written or damaged: not complete
        return False
    return log is not None and log.completed >= member.recipe.epochs


def _member_key(member: MemberSpec) -> tuple:
    return (member.source, member.arch, member.seed)


def pending_tasks(grids: Sequence[Grid], ws: Workspace) -> list[Task]:
    """What the store and pool root lack for ``grids``, in dependency order, without duplicates."""
    root = resolve_pool_root(ws.pool_root)
    members = merge_members(m for grid in grids for m in grid.members)
    inits = merge_members(m for grid in grids for m in grid.initial)
    tasks = [Task("member", m) for m in members if not member_complete(m, root)]
    tasks += [Task("init", m) for m in inits if not initial_path(m, root).is_file()]
    distills = _unique(d for g in grids for d in g.distillations)
    tasks += [Task("distill", d) for d in distills if not ws.store.exists(d)]
    evaluations = _unique(e for g in grids for e in g.evaluations)
    tasks += [Task("evaluation", e) for e in evaluations if not ws.store.exists(e)]
    return tasks


def _dependencies(task: Task) -> list[str]:
    """Keys of the tasks that must finish before ``task``."""
    spec = task.spec
    if task.kind == "evaluation":
        return [Task("distill", spec.subject).key] if isinstance(spec.subject, DistillSpec) else []
    if task.kind == "distill" and spec.guidance is not None:
        g = spec.guidance
        kind = "init" if g.epoch == 0 else "member"
        return [f"{kind}:{g.source}/{arch}/seed{seed}" for arch in g.archs
                for seed in range(g.n_models)]
    return []


def _workspace_config(ws: Workspace, threads: int | None) -> dict[str, Any]:
    return {"store": str(ws.store.root), "pool_root": str(resolve_pool_root(ws.pool_root)),
            "data_root": None if ws.data_root is None else str(ws.data_root),
            "device": str(ws.device), "threads": threads}


def execute_task(task: Task, config: Mapping[str, Any]) -> tuple[str, str, str]:
    """Run one task in this process; return (key, status, message); never raises."""
    try:
        import torch

        from .pools import train_member
        from .runs import Workspace, distill_run, evaluation_run
        from .store import RunStore

        if config.get("threads"):
            torch.set_num_threads(int(config["threads"]))
        ws = Workspace(RunStore(config["store"]), data_root=config["data_root"],
                       pool_root=config["pool_root"], device=config["device"], progress=False)
        if task.kind == "member":
            train_member(task.spec, root=ws.pool_root, data_root=ws.data_root, device=ws.device,
                         progress=False)
        elif task.kind == "init":
            write_initial_checkpoint(task.spec, ws.pool_root)
        elif task.kind == "distill":
            distill_run(task.spec, ws)
        elif task.kind == "evaluation":
            evaluation_run(task.spec, ws)
        else:
            raise StudyError(f"unknown task kind {task.kind!r}")
        return task.key, "done", ""
    except Exception as error:  # noqa: BLE001 - reported to the caller, which decides
        status = "diverged" if type(error).__name__ == "DistillationDiverged" else "failed"
        message = f"{type(error).__name__}: {error}"
        if status == "failed":
            message += "\n" + traceback.format_exc(limit=6)
        return task.key, status, message


def execute_tasks(task_list: Sequence[Task], config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Run tasks one after another in this process (a submitit job's body)."""
    return [execute_task(task, config) for task in task_list]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_local(tasks: Sequence[Task], config: dict[str, Any], workers: int,
               log: Any) -> dict[str, tuple[str, str]]:
    """Run ``tasks`` respecting dependencies in ``workers`` spawned processes (1: in-process)."""
    results: dict[str, tuple[str, str]] = {}
    keys = {t.key for t in tasks}
    deps = {t.key: [d for d in _dependencies(t) if d in keys] for t in tasks}
    waiting = list(tasks)

    def ready(task: Task) -> bool | None:
        """True: can start; None: a dependency failed; False: wait."""
        states = [results.get(d) for d in deps[task.key]]
        if any(s is not None and s[0] != "done" for s in states):
            return None
        return all(s is not None for s in states)

    def settle(key: str, status: str, message: str) -> None:
        results[key] = (status, message)
        log(f"[{len(results)}/{len(tasks)}] {status}: {key}" +
            (f" ({message.splitlines()[0]})" if message else ""))

    if workers <= 1:
        for task in waiting:
            if ready(task) is None:
                settle(task.key, "skipped", "a task it depends on did not finish")
                continue
            settle(*execute_task(task, config))
        return results

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    config = dict(config, threads=config.get("threads") or 1)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(int(config["threads"]),)) as pool:
        running: dict[Any, Task] = {}
        while waiting or running:
            for task in list(waiting):
                state = ready(task)
                if state is None:
                    waiting.remove(task)
                    settle(task.key, "skipped", "a task it depends on did not finish")
                elif state:
                    waiting.remove(task)
                    running[pool.submit(execute_task, task, config)] = task
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    settle(*future.result())
                except Exception as error:  # noqa: BLE001 - a worker died
                    settle(task.key, "failed", f"{type(error).__name__}: {error}")
    return results


def _stages(tasks: Sequence[Task]) -> list[list[Task]]:
    order = (("member", "init"), ("distill",), ("evaluation",))
    return [[t for t in tasks if t.kind in kinds] for kinds in order]


def _run_slurm(tasks: Sequence[Task], config: dict[str, Any], workers: int,
               slurm: Mapping[str, Any], folder: Path, log: Any) -> dict[str, tuple[str, str]]:
    """Submit each stage's tasks through submitit in at most ``workers`` jobs; wait for them."""
    import submitit

    slurm = dict(slurm or {})
    cluster = slurm.pop("cluster", None)
    max_jobs = int(slurm.pop("max_jobs", 0) or workers or 1)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    if slurm:
        executor.update_parameters(**slurm)
    if not config.get("threads"):
        # jobs sharing this machine (local, debug) get one thread each: oversubscribed intra-op
        # threads spin and slow everything down; on a cluster a job uses its cpus_per_task
        threads = slurm.get("cpus_per_task") or (1 if executor.cluster in ("local", "debug") else 0)
        config = dict(config, threads=threads or None)
    results: dict[str, tuple[str, str]] = {}
    for stage in _stages(tasks):
        runnable = []
        for task in stage:
            failed = [d for d in _dependencies(task) if d in results and results[d][0] != "done"]
            if failed:
                results[task.key] = ("skipped", f"{failed[0]} did not finish")
            else:
                runnable.append(task)
        if not runnable:
            continue
        n_jobs = min(max_jobs, len(runnable))
        chunks = [runnable[i::n_jobs] for i in range(n_jobs)]
        jobs = [executor.submit(execute_tasks, chunk, config) for chunk in chunks]
        log(f"submitted {len(runnable)} {stage[0].kind} tasks as {len(jobs)} submitit jobs "
            f"({executor.cluster}) under {folder}")
        for job, chunk in zip(jobs, chunks, strict=True):
            try:
                for key, status, message in job.result():
                    results[key] = (status, message)
            except Exception as error:  # noqa: BLE001 - a job died; its tasks failed
                for task in chunk:
                    results.setdefault(task.key, ("failed", f"job {job.job_id}: {error}"))
    for key, (status, message) in results.items():
        if status != "done":
            log(f"{status}: {key} ({message.splitlines()[0] if message else ''})")
    return results


def compute(
    grids: Grid | Sequence[Grid],
    *,
    executor: str = "local",
    workers: int = 1,
    ws: Workspace | None = None,
    slurm: Mapping[str, Any] | None = None,
    folder: str | Path | None = None,
    verbose: bool = True,
) -> dict[str, tuple[str, str]]:
    """Compute everything the grids need that is not stored; return {task key: (status, message)}.

    Raises :class:`StudyError` if a task failed (other than a diverged distillation, which is
    kept as a result: its evaluations are skipped and the frame says so).
    """
    grids = [grids] if isinstance(grids, Grid) else list(grids)
    if not grids:
        return {}
    ws = ws or workspace(grids[0].params)
    tasks = pending_tasks(grids, ws)
    if not tasks:
        return {}

    def log(message: str) -> None:
        if verbose:
            print(message, flush=True)

    counts = {k: sum(t.kind == k for t in tasks) for k in ("member", "init", "distill", "evaluation")}
    log(f"computing {len(tasks)} tasks ({', '.join(f'{v} {k}' for k, v in counts.items() if v)}) "
        f"with the {executor} executor, {workers} worker(s)")
    config = _workspace_config(ws, None)
    if executor == "local":
        results = _run_local(tasks, config, int(workers), log)
    elif executor == "slurm":
        folder = Path(folder) if folder else runs_dir(grids[0].params) / "submitit"
        results = _run_slurm(tasks, config, int(workers), slurm or grids[0].params.get("slurm") or {},
                             folder, log)
    else:
        raise StudyError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    failed = {k: v for k, v in results.items() if v[0] == "failed"}
    if failed:
        details = "\n".join(f"- {k}: {m}" for k, (_, m) in failed.items())
        raise StudyError(f"{len(failed)} of {len(tasks)} tasks failed:\n{details}")
    return results


# --------------------------------------------------------------------------- frames


def frame(grid: Grid, ws: Workspace | None = None) -> pd.DataFrame:
    """One row per evaluated network of ``grid`` (stored runs only): labels, spec fields, metrics.

    ``frame.attrs["missing"]`` lists the grid's evaluations without a stored run (e.g. a diverged
    distillation).
    """
    import pandas as pd

    from .store import spec_fields

    ws = ws or workspace(grid.params)
    records, missing = [], []
    for item in grid.items:
        run = ws.store.get(item.spec)
        if run is None:
            missing.append(item)
            continue
        base = {"notebook": grid.notebook, **dict(item.labels), "run_id": run.id,
                **spec_fields(run.spec)}
        for row in run.metrics.get("rows", []):
            record = dict(base)
            for key, value in row.items():
                value = tuple(value) if isinstance(value, list) else value
                if key in base and base[key] != value:
                    record[f"row.{key}"] = value
                else:
                    record[key] = value
            records.append(record)
    table = pd.DataFrame.from_records(records)
    for name in {key for item in grid.items for key, _ in item.labels}:
        values = table[name].dropna() if name in table else []
        if len(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[name] = table[name].astype("Int64")  # ints with gaps stay ints
    table.attrs["missing"] = [dict(i.labels) | {"run": i.spec.subject} for i in missing]
    return table


def run(
    grid: Grid,
    executor: str | None = None,
    workers: int | None = None,
    *,
    ws: Workspace | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Compute what ``grid`` lacks (see :func:`compute`) and return its tidy frame."""
    p = grid.params
    ws = ws or workspace(p)
    compute(grid, executor=executor or p.get("executor", "local"),
            workers=int(workers or p.get("workers", 1)), ws=ws, slurm=p.get("slurm"),
            verbose=verbose)
    table = frame(grid, ws)
    if table.attrs["missing"] and verbose:
        warnings.warn(f"{len(table.attrs['missing'])} evaluations of {grid.notebook} have no "
                      "stored run (a distillation diverged?)", RuntimeWarning, stacklevel=2)
    return table


def distillation_frame(grid: Grid, ws: Workspace | None = None) -> pd.DataFrame:
    """One row per stored distillation of ``grid``: labels, spec fields, time, final loss."""
    import pandas as pd

    from .store import spec_fields

    ws = ws or workspace(grid.params)
    records, seen = [], set()
    for item in grid.items:
        subject = item.spec.subject
        if not isinstance(subject, DistillSpec) or subject in seen:
            continue
        seen.add(subject)
        run = ws.store.get(subject)
        if run is None:
            continue
        labels = {k: v for k, v in item.labels}
        records.append({**labels, "run_id": run.id, **spec_fields(run.spec),
                        "distill_seconds": run.metrics.get("distill_seconds"),
                        "final_loss": run.metrics.get("final_loss")})
    return pd.DataFrame.from_records(records)


def pool_frame(grid: Grid, ws: Workspace | None = None, per_epoch: bool = False) -> pd.DataFrame:
    """Pool members of ``grid``: training time, storage, final test accuracy (or every epoch)."""
    import pandas as pd

    from .pools import member_log

    ws = ws or workspace(grid.params)
    root = resolve_pool_root(ws.pool_root)
    records = []
    for member in grid.members:
        log = member_log(member.source, member.arch, member.seed, root)
        directory = member.directory(root)
        if per_epoch:
            records += [{"source": member.source, "arch": member.arch, "seed": member.seed,
                         "epoch": e["epoch"], "test_acc": e["test_acc"]} for e in log.epochs]
            continue
        files = [p for p in directory.iterdir() if p.is_file()]
        checkpoints = [p for p in files if p.name.startswith("epoch_")]
        records.append({
            "source": member.source, "arch": member.arch, "seed": member.seed,
            "epochs": log.completed,
            "train_seconds": log.seconds,
            "checkpoints": len(checkpoints),
            "storage_MB": sum(p.stat().st_size for p in files) / 2**20,
            "final_test_acc": log.epochs[-1]["test_acc"] if log.epochs else math.nan,
        })
    return pd.DataFrame.from_records(records)


# --------------------------------------------------------------------------- dry run


@dataclass
class Counts:
    """How much a grid implies and how much of it is already there."""

    notebook: str
    members: int
    members_done: int
    initial: int
    initial_done: int
    distillations: int
    distillations_done: int
    evaluations: int
    evaluations_done: int
    networks: int
    networks_done: int


def count(grids: Sequence[Grid], ws: Workspace, name: str) -> Counts:
    """Counts for ``grids`` taken together (duplicates across them counted once)."""
    root = resolve_pool_root(ws.pool_root)
    members = merge_members(m for g in grids for m in g.members)
    initial = merge_members(m for g in grids for m in g.initial)
    distills = _unique(d for g in grids for d in g.distillations)
    evaluations = _unique(e for g in grids for e in g.evaluations)
    stored = [e for e in evaluations if ws.store.exists(e)]
    return Counts(
        name, len(members), sum(member_complete(m, root) for m in members),
        len(initial), sum(initial_path(m, root).is_file() for m in initial),
        len(distills), sum(ws.store.exists(d) for d in distills),
        len(evaluations), len(stored),
        sum(e.n_nets for e in evaluations), sum(e.n_nets for e in stored),
    )


def dry_run(
    profile: str | Path, overrides: Iterable[str] | Mapping[str, Any] | None = None,
    only: Sequence[str] | None = None, file: Any = None,
) -> list[Counts]:
    """Print, per notebook and in total, what ``profile`` implies and how much is stored."""
    file = file or sys.stdout
    params = load_profile(profile, overrides)
    notebooks = _select(only)
    grids = [build_grid(nb, params[nb]) for nb in notebooks]
    ws = workspace(params[notebooks[0]])
    rows = [count([g], ws, g.notebook) for g in grids] + [count(grids, ws, "total (deduplicated)")]
    print(f"profile {params[notebooks[0]]['profile']}: store {ws.store.root}, pools "
          f"{resolve_pool_root(ws.pool_root)}", file=file)
    header = (f"{'notebook':<24}{'pool members':>16}{'untrained':>11}{'distillations':>15}"
              f"{'evaluation runs':>17}{'networks':>16}")
    print(header, file=file)
    for c in rows:
        print(f"{c.notebook:<24}{f'{c.members_done}/{c.members}':>16}"
              f"{f'{c.initial_done}/{c.initial}':>11}"
              f"{f'{c.distillations_done}/{c.distillations}':>15}"
              f"{f'{c.evaluations_done}/{c.evaluations}':>17}"
              f"{f'{c.networks_done}/{c.networks}':>16}", file=file)
    print("(done/needed: pool members trained to the recipe's epochs, untrained initial "
          "checkpoints, distillations and evaluations in the store, networks they trained)",
          file=file)
    return rows


# --------------------------------------------------------------------------- the batch


def _select(only: Sequence[str] | str | None) -> list[str]:
    if not only:
        return list(NOTEBOOKS)
    if isinstance(only, str):
        only = [part.strip() for part in only.split(",") if part.strip()]
    chosen = []
    for name in only:
        matches = [nb for nb in NOTEBOOKS if nb == name or nb.split("_", 1)[0] == name
                   or nb.split("_", 1)[1] == name]
        if not matches:
            raise StudyError(f"unknown notebook {name!r}; valid: {', '.join(NOTEBOOKS)}")
        chosen += matches
    return [nb for nb in NOTEBOOKS if nb in chosen]


def notebook_path(notebook: str) -> Path:
    """The source notebook ``notebooks/<notebook>.ipynb``."""
    return project_root() / "notebooks" / f"{notebook}.ipynb"


def machine_description() -> str:
    """CPU count, platform and accelerator, in one line."""
    import torch

    gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    return (f"{platform.node()}: {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPU cores, {gpu}; torch {torch.__version__}")


def stored_compute_seconds(grids: Sequence[Grid], ws: Workspace) -> float:
    """Seconds the grids' stored runs and pool members took to compute (whenever they ran)."""
    root = resolve_pool_root(ws.pool_root)
    total = 0.0
    for member in merge_members(m for g in grids for m in g.members):
        log = read_member_log(member, root)
        if log is not None:
            total += log.seconds
    specs = _unique([*(d for g in grids for d in g.distillations),
                     *(e for g in grids for e in g.evaluations)])
    for spec in specs:
        found = ws.store.get(spec)
        if found is not None:
            total += float(found.timings.get("compute_seconds", 0.0))
    return total


def run_study(
    profile: str | Path,
    *,
    only: Sequence[str] | str | None = None,
    executor: str | None = None,
    workers: int | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    notebooks: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run a profile: compute every selected grid, execute the notebooks, write the index.

    Returns {"seconds", "compute_seconds", "notebooks" (executed paths), "index", "results"}.
    """
    from . import report

    start = time.perf_counter()
    extra = _normalize_overrides(overrides)
    if executor:
        extra.append(("executor", executor))
    if workers:
        extra.append(("workers", int(workers)))
    params = load_profile(profile, extra)
    chosen = _select(only)
    grids = [build_grid(nb, params[nb]) for nb in chosen]
    first = params[chosen[0]]
    if first.get("executor", "local") not in EXECUTORS:
        raise StudyError(f"unknown executor {first.get('executor')!r}; valid: {', '.join(EXECUTORS)}")
    ws = workspace(first)
    results = compute(grids, executor=first.get("executor", "local"),
                      workers=int(first.get("workers", 1)), ws=ws, slurm=first.get("slurm"),
                      folder=runs_dir(first) / "submitit", verbose=verbose)
    executed = []
    if notebooks:
        out_dir = runs_dir(first) / "notebooks"
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(notebook_path(nb), out_dir / f"{nb}.ipynb",
                 {"profile": params[nb]["profile"], "params": params[nb]}) for nb in chosen]
        parallel = max(1, min(int(first.get("workers", 1)), len(jobs)))
        if verbose:
            print(f"papermill: {len(jobs)} notebooks, {parallel} at a time, into {out_dir} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        if parallel == 1:
            for job in jobs:
                execute_notebook(*job)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(parallel, mp_context=context) as pool:
                list(pool.map(execute_notebook, *zip(*jobs, strict=True)))
        executed = [job[1] for job in jobs]
    seconds = time.perf_counter() - start
    figures = figures_dir(first)
    index = None
    if notebooks:
        figures.mkdir(parents=True, exist_ok=True)
        batch = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine_description(),
                 "notebooks": ", ".join(chosen), "executor": first.get("executor", "local"),
                 "workers": int(first.get("workers", 1)), "tasks computed": len(results),
                 "wall seconds": round(seconds, 1)}
        history = report.record_batch(figures, batch)
        meta = {
            "profile": f"{first['profile']} ({profile_path(profile).name})",
            "date": batch["date"],
            "machine": batch["machine"],
            "notebooks in this batch": batch["notebooks"],
            "wall time of this batch": f"{seconds:.0f} s ({len(results)} tasks computed, the "
                                       "rest taken from the store)",
            "compute time of the runs shown": f"{stored_compute_seconds(grids, ws):.0f} s "
                                              "(pool training + distillations + evaluations, as "
                                              "recorded when each was computed)",
        }
        index = report.write_index(figures, first["profile"], NOTEBOOKS, meta, history)
    return {"seconds": seconds, "notebooks": executed, "index": index, "results": results,
            "compute_seconds": stored_compute_seconds(grids, ws)}


def execute_notebook(source: Path, target: Path, parameters: Mapping[str, Any]) -> Path:
    """Execute ``source`` with papermill (``parameters`` injected) into ``target``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(source), str(target), parameters=dict(parameters), cwd=str(project_root()),
            kernel_name="python3", progress_bar=False, log_output=False,
        )
    except PapermillExecutionError as error:
        raise StudyError(
            f"{source.stem} failed at execution count {error.exec_count}: {error.ename}: "
            f"{error.evalue}; the executed notebook with the traceback is {target}"
        ) from None
    return target


def grid_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the runtime keys (what changes results)."""
    return {k: v for k, v in params.items() if k not in RUNTIME_KEYS}


def with_params(grid: Grid, **changes: Any) -> Grid:
    """A copy of ``grid`` whose params have ``changes`` (runtime keys such as ``store``)."""
    return replace(grid, params={**grid.params, **changes})
