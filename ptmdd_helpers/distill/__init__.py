"""Distillation methods: DC, DSA and DM, optionally guided by a pool of pre-trained models."""

from __future__ import annotations

from collections.abc import Callable

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
from .spec import (
    LOOPS_BY_IPC,
    METHODS,
    DistillSpec,
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
}


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
) -> dict:
    """Distill ``data`` by ``spec``; return {"images", "labels", "history", "seconds"}.

    ``batched=False`` runs the per-class reference path (same draws, same results up to rounding).
    """
    validate_spec(spec, data)
    if (spec.guidance is None) != (guidance is None):
        raise ValueError("pass a Guidance exactly when the spec has a guidance section")
    return run_distillation(
        spec, data, ITERATIONS[spec.method], guidance=guidance, device=device,
        save_checkpoint=save_checkpoint, load_checkpoint=load_checkpoint,
        checkpoint_every=checkpoint_every, progress=progress, batched=batched,
    )


__all__ = [
    "ITERATIONS", "LOOPS_BY_IPC", "METHODS", "DistillSpec", "DistillState", "check_spec",
    "DistillationDiverged", "distill", "initial_set_key", "initial_synthetic_set",
    "loops_for_ipc", "make_spec", "match_loss", "real_subset_generator", "validate_spec",
    "with_seed",
]
