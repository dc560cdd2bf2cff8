"""Grids: what each notebook needs, built from its merged parameters.

A :class:`Grid` lists a notebook's labelled evaluations (:class:`~ptmdd_helpers.runs.EvaluationSpec`
whose subjects are distillations, random real subsets or the whole training set) and the pool
checkpoints its guided distillations read. :func:`build_grid` calls the notebook's builder; every
builder pairs each condition with the baseline at the same seed, so conditions share their random
streams (docs/method.md, "Random streams").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..data import get_info
from ..distill import METHODS, DistillSpec, make_spec
from ..evaluate import EvalProtocol, protocol_for
from ..guidance import DEFAULT_CCLOM_REAL_BATCH, GuidanceSpec
from ..pools import MTT_EXPERT_RECIPE, MemberSpec, PoolError, TrainRecipe, recipe_identity
from ..pools import ptm_epoch as resolve_ptm_epoch
from ..runs import EvaluationSpec, RealSubsetSpec, WholeDatasetSpec
from .profiles import NOTEBOOKS, StudyError

Params = Mapping[str, Any]


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
        return unique(i.spec.subject for i in self.items if isinstance(i.spec.subject, DistillSpec))

    @property
    def evaluations(self) -> list[EvaluationSpec]:
        """Evaluation runs (unique, in order)."""
        return unique(i.spec for i in self.items)

    @property
    def networks(self) -> int:
        """Evaluation networks to train in all."""
        return sum(spec.n_nets for spec in self.evaluations)


def member_identity(member: MemberSpec) -> tuple[str, str, int, str]:
    """What names a member on disk: (source, arch, seed, named recipe); its epoch count does not."""
    return (member.source, member.arch, member.seed, member.recipe_name)


def merge_members(members: Iterable[MemberSpec]) -> list[MemberSpec]:
    """One member per (source, arch, seed, named recipe), the one with the most epochs, in
    first-seen order.

    A member trained for 6 epochs holds the first 2 epochs that another notebook may ask for.
    """
    chosen: dict[tuple, MemberSpec] = {}
    for member in members:
        key = member_identity(member)
        if key not in chosen or member.recipe.epochs > chosen[key].recipe.epochs:
            chosen[key] = member
    return list(chosen.values())


def unique(items: Iterable[Any]) -> list[Any]:
    """``items`` without repeats, in first-seen order."""
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


# --------------------------------------------------------------------------- profile values


def pool_recipe(params: Params) -> TrainRecipe:
    """The recipe the profile's pool members are trained with."""
    raw = dict(params["pool"]["recipe"])
    raw["milestones"] = tuple(raw.get("milestones", ()))
    return TrainRecipe(**raw)


def expert_recipe(params: Params, needed: int) -> TrainRecipe:
    """The recipe of MTT's experts: MTT's (pools.MTT_EXPERT_RECIPE) with the profile's
    ``experts.recipe`` values; trained at least to the ``needed`` epoch."""
    raw = dict(((params.get("experts") or {}).get("recipe")) or {})
    if "milestones" in raw:
        raw["milestones"] = tuple(raw["milestones"])
    recipe = replace(MTT_EXPERT_RECIPE, **raw)
    if recipe.epochs < needed:
        raise StudyError(
            f"MTT reads expert epochs up to {needed} (max_start_epoch − 1 + expert_epochs), but "
            f"the profile's experts.recipe.epochs is {recipe.epochs}: raise it to at least "
            f"{needed}, or lower max_start_epoch / expert_epochs in distill.MTT")
    return recipe


def kept_epochs(params: Params) -> tuple[int, ...] | None:
    """The pool epochs whose checkpoints are kept (``None``: every epoch)."""
    keep = params["pool"].get("keep_epochs")
    return tuple(sorted(int(e) for e in keep)) if keep is not None else None


def ptm_epoch(params: Params, requested: Any) -> int:
    """The PTM epoch ``requested`` names, the end of training being the recipe's epochs
    (:func:`ptmdd_helpers.pools.ptm_epoch`, the resolver the CLI uses too)."""
    try:
        return resolve_ptm_epoch(requested, pool_recipe(params).epochs, kept_epochs(params))
    except PoolError as error:
        raise StudyError(f"{error} (the profile's pool section)") from None


def method_alpha(params: Params, method: str, ipc: int, value: Any = None) -> float:
    """α for ``method`` at ``ipc``: a number, per method, or per method and IPC (nearest IPC)."""
    alpha = params.get("alpha", 100.0) if value is None else value
    if isinstance(alpha, Mapping):
        alpha = alpha.get(method, alpha.get("default", 100.0))
    if isinstance(alpha, Mapping):
        if ipc in alpha or str(ipc) in alpha:
            alpha = alpha.get(ipc, alpha.get(str(ipc)))
        else:
            nearest = min(alpha, key=lambda k: abs(int(k) - ipc))
            alpha = alpha[nearest]
    return float(alpha)


def pool_alphas(params: Params, method: str, ipc: int, archs: Sequence[str]) -> list[float]:
    """α per pool architecture from ``arch_alpha`` ({method: {arch: α}}) when given, else one α."""
    table = (params.get("arch_alpha") or {}).get(method)
    if table and len(archs) > 1:
        return [float(table.get(a, method_alpha(params, method, ipc))) for a in archs]
    return [method_alpha(params, method, ipc)]


def architecture_pools(params: Params) -> list[list[str]]:
    """The pools of 02: ``combinations``, else each architecture alone, then growing prefixes."""
    if params.get("combinations"):
        return [list(c) for c in params["combinations"]]
    archs = list(params["archs"])
    return [[a] for a in archs] + [archs[:k] for k in range(2, len(archs) + 1)]


def methods(params: Params) -> list[str]:
    """The distillation methods the notebook compares (upper case)."""
    return [m.upper() for m in params.get("methods", ["DM"])]


def protocol(params: Params, method: str, dataset: str | None = None, arch: str | None = None,
             **extra: Any) -> EvalProtocol:
    """The evaluation protocol of ``method`` with the profile's ``eval`` overrides; DC's default
    augmentation follows the reference for ``dataset`` and ``arch`` (docs/method.md)."""
    section = params.get("eval") or {}
    settings = {k: v for k, v in section.items() if k not in (*METHODS, "archs", "n_nets")}
    settings.update(section.get(method) or {})
    settings.update(extra)
    return protocol_for(method, dataset=dataset, arch=arch, **settings)


# --------------------------------------------------------------------------- specs


def guidance_spec(
    params: Params, grid: Grid, *, kind: str, source: str, archs: Sequence[str], n_models: int,
    epoch: Any, alphas: Sequence[float], ptm_only: bool = False,
) -> GuidanceSpec:
    """A guidance spec; the pool checkpoints it reads are recorded in ``grid.needs``."""
    epoch = ptm_epoch(params, epoch)
    recipe, keep = pool_recipe(params), kept_epochs(params)
    for arch in archs:
        get_info(source)
        for seed in range(int(n_models)):
            grid.needs.append(PoolNeed(MemberSpec(source, arch, seed, recipe, keep), epoch))
    cclom_real_batch = int(params.get("cclom_real_batch") or DEFAULT_CCLOM_REAL_BATCH)
    return GuidanceSpec(kind, source, tuple(archs), int(n_models), epoch,
                        tuple(float(a) for a in alphas),
                        cclom_real_batch if kind == "cclom" else DEFAULT_CCLOM_REAL_BATCH, ptm_only,
                        recipe_identity(recipe))  # epoch 0: "untrained" (GuidanceSpec)


def profile_guidance(
    params: Params, grid: Grid, method: str, ipc: int, **changes: Any
) -> GuidanceSpec:
    """CLoM from the profile's ``pool`` on the target at the method's α, with ``changes`` applied."""
    pool = params["pool"]
    settings = {"kind": "clom", "source": params["target"], "archs": [pool["arch"]],
                "n_models": pool["n_models"], "epoch": pool.get("epoch"),
                "alphas": [method_alpha(params, method, ipc)]}
    return guidance_spec(params, grid, **{**settings, **changes})


def distill_spec(
    params: Params, method: str, ipc: int, seed: int, guidance: GuidanceSpec | None = None,
    dataset: str | None = None,
) -> DistillSpec:
    """The distillation of ``method`` at ``ipc`` and ``seed`` with the profile's settings."""
    settings = dict(params.get("distill") or {})
    per_method = {m: settings.pop(m, None) or {} for m in METHODS}
    settings.update(per_method[method])
    spec = make_spec(dataset or params["target"], method, int(ipc), seed=int(seed),
                     guidance=guidance, **settings)
    if spec.trajectory is None:
        return spec
    recipe = expert_recipe(params, spec.trajectory.needed_epochs)  # the run id names it
    return replace(spec, trajectory=replace(spec.trajectory,
                                            pool_recipe=recipe_identity(recipe)))


def expert_needs(params: Params, grid: Grid, spec: DistillSpec) -> None:
    """Record the expert trajectories an MTT distillation reads in ``grid.needs``."""
    trajectory = spec.trajectory
    recipe = expert_recipe(params, trajectory.needed_epochs)
    for seed in range(trajectory.n_experts):
        member = MemberSpec(spec.dataset, spec.model, seed, recipe, None, trajectory.recipe)
        grid.needs.append(PoolNeed(member, recipe.epochs))


def add_evaluations(
    params: Params, grid: Grid, subject: Any, method: str, archs: Sequence[str] | None = None,
    **labels: Any,
) -> None:
    """Evaluate ``subject`` on each evaluation architecture (``eval.archs``, else its model)."""
    section = params.get("eval") or {}
    archs = archs or section.get("archs") or [getattr(subject, "model", None) or
                                             params["distill"].get("model", "ConvNet")]
    if getattr(subject, "trajectory", None) is not None:
        expert_needs(params, grid, subject)
    for arch in archs:
        proto = protocol(params, method, subject.dataset, arch)
        if proto.learned_lr and getattr(subject, "trajectory", None) is None:
            proto = replace(proto, learned_lr=False)  # a real reference learned no lr
        grid.add(EvaluationSpec(subject, arch, int(section.get("n_nets", 1)), proto),
                 method=method, ipc=getattr(subject, "ipc", None), **labels)


# --------------------------------------------------------------------------- one builder per notebook


def preliminary_grid(params: Params) -> Grid:
    """00: each method with and without CLoM, random real subsets, the whole training set."""
    grid, target = Grid("00_preliminary", dict(params)), params["target"]
    references = params.get("references") or {}
    for ipc in params["ipcs"]:
        for method in methods(params):
            for seed in params["seeds"]:
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed), method,
                                condition="baseline")
                g = profile_guidance(params, grid, method, ipc)
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g), method,
                                condition="+CLoM")
        if references.get("random_real", True):
            for method in methods(params):
                for seed in params["seeds"]:
                    add_evaluations(params, grid, RealSubsetSpec(target, int(ipc), int(seed)),
                                    method, condition="random real")
    whole = references.get("whole")
    if whole:
        whole = dict(whole)
        n_nets, arch = int(whole.pop("n_nets", 1)), whole.pop("arch", None)
        arch = (arch or ((params.get("eval") or {}).get("archs") or [None])[0]
                or params["distill"].get("model"))
        grid.add(EvaluationSpec(WholeDatasetSpec(target), arch, n_nets,
                                protocol(params, whole.pop("method", "DC"), target, arch,
                                         **{**whole, "learned_lr": False})),
                 method="whole", ipc=None, condition="whole dataset")
    return grid


def initialization_grid(params: Params) -> Grid:
    """01: CLoM with pools of 1 … N initializations of one architecture."""
    grid = Grid("01_initialization", dict(params))
    for ipc in params["ipcs"]:
        for method in methods(params):
            for seed in params["seeds"]:
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed), method,
                                condition="baseline", n_models=0)
                for n in params["n_models"]:
                    g = profile_guidance(params, grid, method, ipc, n_models=n)
                    add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g),
                                    method, condition="+CLoM", n_models=int(n))
    return grid


def architecture_grid(params: Params) -> Grid:
    """02: CLoM with pools of one or several architectures."""
    grid = Grid("02_architecture", dict(params))
    for ipc in params["ipcs"]:
        for method in methods(params):
            for seed in params["seeds"]:
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed), method,
                                condition="baseline", pool="none", n_archs=0)
                for archs in architecture_pools(params):
                    g = profile_guidance(params, grid, method, ipc, archs=archs,
                                         alphas=pool_alphas(params, method, ipc, archs))
                    add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g),
                                    method, condition="+CLoM", pool="+".join(archs),
                                    n_archs=len(archs))
    return grid


def epoch_grid(params: Params) -> Grid:
    """03: CLoM with the PTMs' checkpoints of several training epochs."""
    grid = Grid("03_epoch", dict(params))
    for ipc in params["ipcs"]:
        for method in methods(params):
            for seed in params["seeds"]:
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed), method,
                                condition="baseline", ptm_epoch=None)
                for epoch in params["epochs"]:
                    g = profile_guidance(params, grid, method, ipc, epoch=epoch)
                    add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g),
                                    method, condition="+CLoM", ptm_epoch=g.epoch)
    return grid


DOMAIN_CONDITIONS = ("CLoM (target PTMs)", "CCLoM (target PTMs)", "CCLoM (other-domain PTMs)",
                     "CCLoM (untrained PTMs)")


def domain_grid(params: Params) -> Grid:
    """04: CLoM and CCLoM with PTMs of the target, of another domain, and untrained."""
    grid = Grid("04_domain", dict(params))
    pairs = params.get("pairs") or [{"target": params["target"], "other": params["other"]}]
    chosen = params.get("conditions") or DOMAIN_CONDITIONS  # a subset, by name
    unknown = sorted(set(chosen) - set(DOMAIN_CONDITIONS))
    if unknown:
        raise StudyError(f"04_domain: unknown condition(s) {unknown}; valid: "
                         f"{', '.join(DOMAIN_CONDITIONS)}")
    for pair in pairs:
        target, other = pair["target"], pair["other"]
        for ipc in params["ipcs"]:
            for method in methods(params):
                alpha = method_alpha(params, method, ipc)
                cclom_alpha = method_alpha(params, method, ipc, params.get("cclom_alpha"))
                pool_epoch = params["pool"].get("epoch")
                conditions = [
                    (DOMAIN_CONDITIONS[0], "clom", target, pool_epoch, alpha),
                    (DOMAIN_CONDITIONS[1], "cclom", target, pool_epoch, cclom_alpha),
                    (DOMAIN_CONDITIONS[2], "cclom", other, pool_epoch, cclom_alpha),
                    (DOMAIN_CONDITIONS[3], "cclom", target, 0, cclom_alpha),
                ]
                conditions = [c for c in conditions if c[0] in chosen]
                for seed in params["seeds"]:
                    add_evaluations(params, grid,
                                    distill_spec(params, method, ipc, seed, dataset=target),
                                    method, condition="baseline", target=target, ptm_source="none")
                    for name, kind, source, epoch, a in conditions:
                        g = profile_guidance(params, grid, method, ipc, kind=kind, source=source,
                                             epoch=epoch, alphas=[a])
                        add_evaluations(
                            params, grid, distill_spec(params, method, ipc, seed, g, dataset=target),
                            method, condition=name, target=target,
                            ptm_source=source if epoch != 0 else "untrained")
    return grid


def alpha_grid(params: Params) -> Grid:
    """05: the weight α of the PTM loss, and the PTM loss alone."""
    grid = Grid("05_alpha", dict(params))
    for ipc in params["ipcs"]:
        for method in methods(params):
            for seed in params["seeds"]:
                for alpha in params["alphas"]:
                    g = None if float(alpha) == 0 else profile_guidance(
                        params, grid, method, ipc, alphas=[alpha])
                    add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g),
                                    method, condition="baseline" if g is None else "+CLoM",
                                    alpha=float(alpha), ptm_only=False,
                                    default_alpha=float(alpha) == method_alpha(params, method, ipc))
                if params.get("ptm_only", True):
                    g = profile_guidance(params, grid, method, ipc, ptm_only=True)
                    add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g),
                                    method, condition="PTM loss only", alpha=math.inf,
                                    ptm_only=True, default_alpha=False)
    return grid


def cross_architecture_grid(params: Params) -> Grid:
    """06: baseline and the declared best options, evaluated on several architectures."""
    grid, target = Grid("06_cross_architecture", dict(params)), params["target"]
    best = dict(params["best"])
    archs = list(params["eval_archs"])
    for ipc in params["ipcs"]:
        for method in methods(params):
            alphas = ([method_alpha(params, method, ipc, best["alpha"])]
                      if best.get("alpha") is not None
                      else pool_alphas(params, method, ipc, best["archs"]))
            for seed in params["seeds"]:
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed), method,
                                archs, condition="baseline")
                g = guidance_spec(params, grid, kind=best.get("kind", "clom"),
                                  source=best.get("source") or target, archs=best["archs"],
                                  n_models=best["n_models"], epoch=best.get("epoch"),
                                  alphas=alphas)
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g), method,
                                archs, condition="best options")
    return grid


GRID_BUILDERS = dict(zip(NOTEBOOKS, (
    preliminary_grid, initialization_grid, architecture_grid, epoch_grid, domain_grid, alpha_grid,
    cross_architecture_grid,
), strict=True))


def build_grid(notebook: str, params: Params) -> Grid:
    """The grid of ``notebook`` for its merged ``params``."""
    if notebook not in GRID_BUILDERS:
        raise StudyError(f"unknown notebook {notebook!r}; valid: {', '.join(NOTEBOOKS)}")
    try:
        return GRID_BUILDERS[notebook](dict(params))
    except KeyError as error:
        raise StudyError(f"{notebook}: the profile lacks the parameter {error}; add it to the "
                         "notebook's section or to shared (see parameters/smoke.yaml)") from None
