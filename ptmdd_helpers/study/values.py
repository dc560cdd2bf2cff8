"""The profile's values as the grids read them: recipes, PTM epochs, α per method and IPC, the
architecture pools of 02, the methods and each method's evaluation protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..distill import list_methods, protocol_for
from ..evaluation.protocol import EvalProtocol
from ..networks.training import TrainRecipe
from ..pools.members import MTT_EXPERT_RECIPE, MemberSpec, PoolError
from ..pools.pool import ptm_epoch as resolve_ptm_epoch
from .profiles import StudyError

Params = Mapping[str, Any]


def pool_recipe(params: Params) -> TrainRecipe:
    """The recipe the profile's pool members are trained with."""
    raw = dict(params["pool"]["recipe"])
    raw["milestones"] = tuple(raw.get("milestones", ()))
    return TrainRecipe(**raw)


def expert_recipe(params: Params, needed: int) -> TrainRecipe:
    """The recipe of MTT's experts: MTT's (pools.members.MTT_EXPERT_RECIPE) with the profile's
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
    (:func:`ptmdd_helpers.pools.pool.ptm_epoch`, the resolver the CLI uses too)."""
    try:
        return resolve_ptm_epoch(requested, pool_recipe(params).epochs, kept_epochs(params))
    except PoolError as error:
        raise StudyError(f"{error} (the profile's pool section)") from None


def method_alpha(params: Params, method: str, ipc: int, value: Any = None) -> float:
    """α for ``method`` at ``ipc``: a number, per method, or per method and IPC (nearest IPC)."""
    alpha = params["alpha"] if value is None else value
    if isinstance(alpha, Mapping):
        if method not in alpha and "default" not in alpha:
            raise StudyError(f"the profile's α table ({dict(alpha)}) has no entry for {method}: "
                             f"add {method}: <α> (or default: <α>) to it")
        alpha = alpha.get(method, alpha.get("default"))
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
    return list(params["methods"])  # validated: registered names, upper case


def protocol(params: Params, method: str, dataset: str | None = None, arch: str | None = None,
             **extra: Any) -> EvalProtocol:
    """The evaluation protocol of ``method`` with the profile's ``eval`` overrides; DC's default
    augmentation follows the reference for ``dataset`` and ``arch`` (docs/method.md)."""
    section = params.get("eval") or {}
    settings = {k: v for k, v in section.items() if k not in (*list_methods(), "archs", "n_nets")}
    settings.update(section.get(method) or {})
    settings.update(extra)
    return protocol_for(method, dataset=dataset, arch=arch, **settings)


def member_recipe(params: Params, member: MemberSpec, needed: int) -> TrainRecipe:
    """The profile's recipe for a member a method reads, by its named recipe: ``paper`` is the
    pool's (``pool.recipe``), ``mtt`` the experts' (``experts.recipe``)."""
    return pool_recipe(params) if member.recipe_name == "paper" else expert_recipe(params, needed)
