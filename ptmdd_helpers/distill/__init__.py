"""Distillation methods: DC, DSA, DM and MTT, optionally guided by a pool of pre-trained models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..data import LoadedDataset
from ..guidance import Guidance
from .dc import dc_iteration
from .dm import dm_iteration
from .engine import (
    DistillationDiverged,
    DistillState,
    LoadCheckpoint,
    SaveCheckpoint,
    initial_synthetic_set,
    real_subset_generator,
    run_distillation,
    validate_spec,
)
from .matching import match_loss
from .mtt import mtt_iteration
from .spec import (
    LOOPS_BY_IPC,
    METHODS,
    MTT_BY_IPC,
    DistillSpec,
    TrajectorySpec,
    check_spec,
    initial_set_key,
    loops_for_ipc,
    make_spec,
    with_seed,
)

ITERATIONS: dict[str, Callable[[DistillState], torch.Tensor]] = {
    "DC": dc_iteration,
    "DSA": dc_iteration,
    "DM": dm_iteration,
    "MTT": mtt_iteration,
}


def experts_for(spec: DistillSpec, pool_root: str | Path | None = None):
    """The expert trajectories an MTT ``spec`` matches (checked now), else ``None``."""
    from ..experts import Experts

    trajectory = spec.trajectory
    if trajectory is None:
        return None
    return Experts(spec.dataset, spec.model, trajectory.n_experts, trajectory.needed_epochs,
                   trajectory.pool_recipe, trajectory.recipe, root=pool_root)


def distill(
    spec: DistillSpec,
    data: LoadedDataset,
    *,
    guidance: Guidance | None = None,
    device: torch.device | str = "cpu",
    save_checkpoint: SaveCheckpoint | None = None,
    load_checkpoint: LoadCheckpoint | None = None,
    checkpoint_every: int = 50,
    progress: bool = True,
    batched: bool = True,
    experts=None,
    pool_root: str | Path | None = None,
) -> dict:
    """Distill ``data`` by ``spec``; return {"images", "labels", "history", "seconds",
    "learned_lr"} (MTT's learned lr, else ``None``).

    ``batched=False`` runs the per-class reference path (same draws, same results up to rounding).
    MTT reads its ``experts`` (default: :func:`experts_for` under ``pool_root``).
    """
    validate_spec(spec, data)
    if (spec.guidance is None) != (guidance is None):
        raise ValueError("pass a Guidance exactly when the spec has a guidance section")
    if experts is None:
        experts = experts_for(spec, pool_root)
    return run_distillation(
        spec, data, ITERATIONS[spec.method], guidance=guidance, device=device,
        save_checkpoint=save_checkpoint, load_checkpoint=load_checkpoint,
        checkpoint_every=checkpoint_every, progress=progress, batched=batched, experts=experts,
    )


__all__ = [
    "ITERATIONS", "LOOPS_BY_IPC", "METHODS", "MTT_BY_IPC", "DistillSpec", "DistillState",
    "TrajectorySpec", "check_spec", "DistillationDiverged", "distill", "experts_for",
    "initial_set_key", "initial_synthetic_set",
    "loops_for_ipc", "make_spec", "match_loss", "real_subset_generator", "validate_spec",
    "with_seed",
]
