"""Grids: what each notebook needs, built from its merged parameters.

:func:`build_grid` calls the notebook's builder, which fills a :class:`~.grid.Grid` with labelled
evaluations and the pool checkpoints they read; every builder pairs each condition with the
baseline at the same seed, so conditions share their random streams (docs/method.md, "Random
streams"). The profile's values come from :mod:`.values`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..data.datasets import get_info
from ..distill import DistillSpec, get_method, list_methods, make_spec
from ..evaluation.scores import REAL, WHOLE
from ..pools.guidance import GuidanceSpec, make_guidance
from ..pools.members import MemberSpec, recipe_identity
from ..store.evaluations import subject_learns_lr
from ..store.runs import EvaluationSpec, RealSubsetSpec, WholeDatasetSpec
from .grid import Grid, PoolNeed
from .profiles import NOTEBOOKS, StudyError
from .values import (
    architecture_pools,
    kept_epochs,
    member_recipe,
    method_alpha,
    methods,
    pool_alphas,
    pool_recipe,
    protocol,
    ptm_epoch,
)

Params = Mapping[str, Any]


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
    real_batch = params.get("cclom_real_batch") if kind == "cclom" else None
    return make_guidance(kind, source, archs, int(n_models), epoch, alphas,
                         real_batch=None if real_batch is None else int(real_batch),
                         ptm_only=ptm_only,
                         pool_recipe=recipe_identity(recipe))  # epoch 0: "untrained" (GuidanceSpec)


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
    """The distillation of ``method`` at ``ipc`` and ``seed`` with the profile's settings; a
    method that reads pool members (MTT's experts) names the recipe the profile trains them with."""
    settings = dict(params.get("distill") or {})
    settings.pop("snapshots", None)  # where runs are recorded, not a setting (study.roots)
    settings.pop("replicas", None)  # how runs are batched (study.packing), not a setting
    per_method = {m: settings.pop(m, None) or {} for m in list_methods()}
    settings.update(per_method[method])
    spec = make_spec(dataset or params["target"], method, int(ipc), seed=int(seed),
                     guidance=guidance, **settings)
    entry = get_method(method)
    for member, epoch in (entry.members(spec) if entry.members else []):
        identity = recipe_identity(member_recipe(params, member, epoch))  # the run id names it
        spec = entry.bind_recipe(spec, member.recipe_name, identity)
    return spec


def method_needs(params: Params, grid: Grid, spec: DistillSpec) -> None:
    """Record the pool members a distillation's method reads (MTT's experts) in ``grid.needs``."""
    entry = get_method(spec.method)
    for member, epoch in (entry.members(spec) if entry.members else []):
        recipe = member_recipe(params, member, epoch)
        grid.needs.append(PoolNeed(replace(member, recipe=recipe), recipe.epochs))


def add_evaluations(
    params: Params, grid: Grid, subject: Any, method: str, archs: Sequence[str] | None = None,
    **labels: Any,
) -> None:
    """Evaluate ``subject`` on each evaluation architecture (``eval.archs``, else its model)."""
    section = params.get("eval") or {}
    archs = archs or section.get("archs") or [getattr(subject, "model", None) or
                                             params["distill"].get("model", "ConvNet")]
    if isinstance(subject, DistillSpec):
        method_needs(params, grid, subject)
    for arch in archs:
        proto = protocol(params, method, subject.dataset, arch)
        if proto.learned_lr and not subject_learns_lr(subject):
            proto = replace(proto, learned_lr=False)  # a real reference learned no lr
        grid.add(EvaluationSpec(subject, arch, int(section.get("n_nets", 1)), proto),
                 method=method, ipc=getattr(subject, "ipc", None), **labels)


# --------------------------------------------------------------------------- one builder per notebook


def snapshot_counts(params: Params, spec: DistillSpec) -> list[int]:
    """The iteration counts ``distill.snapshots`` lists below ``spec``'s, ascending."""
    counts = (params.get("distill") or {}).get("snapshots") or ()
    return sorted({int(k) for k in counts if 0 < int(k) < spec.iterations})


def preliminary_grid(params: Params) -> Grid:
    """00: each method with and without CLoM, also at each snapshot count below its iterations
    (``distill.snapshots``: the gain against iterations, one distillation per seed), random real
    subsets, the whole training set. Labels: ``iterations``, and ``final`` (the full run)."""
    grid, target = Grid("00_preliminary", dict(params)), params["target"]
    references = params.get("references") or {}
    for ipc in params["ipcs"]:
        for method in methods(params):
            for seed in params["seeds"]:
                for condition, g in (("baseline", None),
                                     ("+CLoM", profile_guidance(params, grid, method, ipc))):
                    spec = distill_spec(params, method, ipc, seed, g)
                    for k in [*snapshot_counts(params, spec), spec.iterations]:
                        add_evaluations(params, grid, replace(spec, iterations=k), method,
                                        condition=condition, iterations=k,
                                        final=k == spec.iterations)
        if references.get("random_real", True):
            for method in methods(params):
                for seed in params["seeds"]:
                    add_evaluations(params, grid, RealSubsetSpec(target, int(ipc), int(seed)),
                                    method, condition=REAL, iterations=0, final=True)
    whole = references.get("whole")
    if whole:
        whole = dict(whole)
        n_nets, arch = int(whole.pop("n_nets", 1)), whole.pop("arch", None)
        arch = (arch or ((params.get("eval") or {}).get("archs") or [None])[0]
                or params["distill"].get("model"))
        grid.add(EvaluationSpec(WholeDatasetSpec(target), arch, n_nets,
                                protocol(params, whole.pop("method", "DC"), target, arch,
                                         **{**whole, "learned_lr": False})),
                 method="whole", ipc=None, condition=WHOLE, iterations=None,
                 final=True)
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
    """02: CLoM with pools of one or several architectures; with ``matched_control``, each pool
    of k > 1 architectures also gets its count-matched control: k initializations of its first
    architecture (the same number of PTMs, one architecture). Labels: ``pool``, ``n_archs``,
    ``n_members``."""
    grid = Grid("02_architecture", dict(params))
    per_arch = int(params["pool"]["n_models"])
    pools = [(archs, per_arch, "+".join(archs)) for archs in architecture_pools(params)]
    if params.get("matched_control"):
        pools += [([archs[0]], len(archs) * per_arch, f"{archs[0]} ×{len(archs) * per_arch}")
                  for archs, _, _ in list(pools) if len(archs) > 1]
    for ipc in params["ipcs"]:
        for method in methods(params):
            for seed in params["seeds"]:
                add_evaluations(params, grid, distill_spec(params, method, ipc, seed), method,
                                condition="baseline", pool="none", n_archs=0, n_members=0)
                for archs, inits, name in pools:
                    g = profile_guidance(params, grid, method, ipc, archs=archs, n_models=inits,
                                         alphas=pool_alphas(params, method, ipc, archs))
                    add_evaluations(params, grid, distill_spec(params, method, ipc, seed, g),
                                    method, condition="+CLoM", pool=name, n_archs=len(archs),
                                    n_members=len(archs) * inits)
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
    """04: CLoM and CCLoM with PTMs of the target, of one or more other domains (a pair's
    ``other``: a dataset or a list, e.g. a near and a far one), and untrained. Labels:
    ``condition``, ``target``, ``ptm_source`` (the PTMs' dataset, ``untrained`` or ``none``)."""
    grid = Grid("04_domain", dict(params))
    pairs = params.get("pairs") or [{"target": params["target"], "other": params["other"]}]
    chosen = params.get("conditions") or DOMAIN_CONDITIONS  # a subset, by name
    unknown = sorted(set(chosen) - set(DOMAIN_CONDITIONS))
    if unknown:
        raise StudyError(f"04_domain: unknown condition(s) {unknown}; valid: "
                         f"{', '.join(DOMAIN_CONDITIONS)}")
    for pair in pairs:
        target = pair["target"]
        others = [pair["other"]] if isinstance(pair["other"], str) else list(pair["other"])
        for ipc in params["ipcs"]:
            for method in methods(params):
                alpha = method_alpha(params, method, ipc)
                cclom_alpha = method_alpha(params, method, ipc, params.get("cclom_alpha"))
                pool_epoch = params["pool"].get("epoch")
                conditions = [
                    (DOMAIN_CONDITIONS[0], "clom", target, pool_epoch, alpha, target),
                    (DOMAIN_CONDITIONS[1], "cclom", target, pool_epoch, cclom_alpha, target),
                    *[(DOMAIN_CONDITIONS[2], "cclom", other, pool_epoch, cclom_alpha, other)
                      for other in others],
                    (DOMAIN_CONDITIONS[3], "cclom", target, 0, cclom_alpha, "untrained"),
                ]
                conditions = [c for c in conditions if c[0] in chosen]
                for seed in params["seeds"]:
                    add_evaluations(params, grid,
                                    distill_spec(params, method, ipc, seed, dataset=target),
                                    method, condition="baseline", target=target, ptm_source="none")
                    for name, kind, source, epoch, a, label in conditions:
                        g = profile_guidance(params, grid, method, ipc, kind=kind, source=source,
                                             epoch=epoch, alphas=[a])
                        add_evaluations(
                            params, grid, distill_spec(params, method, ipc, seed, g, dataset=target),
                            method, condition=name, target=target, ptm_source=label)
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
                if params["ptm_only"]:
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
                g = guidance_spec(params, grid, kind=best["kind"],
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


# what a notebook's grid cannot be built without (the schema lets them be absent: a profile may
# hold only some notebooks' sections)
NEEDED = {"01_initialization": ("n_models",), "02_architecture": ("archs",), "03_epoch": ("epochs",),
          "05_alpha": ("alphas",), "06_cross_architecture": ("best", "eval_archs")}


def build_grid(notebook: str, params: Params) -> Grid:
    """The grid of ``notebook`` for its merged ``params``."""
    if notebook not in GRID_BUILDERS:
        raise StudyError(f"unknown notebook {notebook!r}; valid: {', '.join(NOTEBOOKS)}")
    missing = [key for key in NEEDED.get(notebook, ()) if params.get(key) is None]
    if missing:
        raise StudyError(f"{notebook}: the profile {params.get('profile', '')} gives no "
                         f"{', '.join(missing)}; add the notebook's section (see parameters/smoke.yaml), "
                         "or leave the notebook out (--only)")
    try:
        return GRID_BUILDERS[notebook](dict(params))
    except KeyError as error:
        raise StudyError(f"{notebook}: the profile lacks the parameter {error}; add it to the "
                         "notebook's section or to shared (see parameters/smoke.yaml)") from None
