"""Distillation: the engine, the method registry and its methods (DC, DSA, DM, MTT), optionally
guided by a pool of pre-trained models. A method is one module that registers itself
(:mod:`.methods`); importing this package registers the built-in ones."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import torch

from ..data.datasets import LoadedDataset
from ..pools.guidance import Guidance
from . import dc, dm, mtt  # noqa: F401  (register DC, DSA, DM, MTT)
from .engine import (
    CHECKPOINT_EVERY,
    DistillationDiverged,
    DistillState,
    LoadCheckpoint,
    SaveCheckpoint,
    SaveSnapshot,
    initial_synthetic_set,
    real_subset_generator,
    validate_spec,
)
from .loop import Replica, run_alone, run_replicas
from .matching import match_loss
from .methods import (
    REGISTRY,
    Method,
    get_method,
    list_methods,
    protocol_for,
    register_method,
    unregister_method,
)
from .mtt import MTT_BY_IPC, TrajectorySpec
from .spec import LOOPS_BY_IPC, DistillSpec, check_spec, initial_set_key, loops_for_ipc, make_spec, with_seed


def load_resources(spec: DistillSpec, pool_root: str | Path | None = None):
    """What ``spec``'s method reads before it starts (MTT: its experts, checked now), else ``None``."""
    method = get_method(spec.method)
    return method.resources(spec, pool_root) if method.resources is not None else None


def distill(
    spec: DistillSpec,
    data: LoadedDataset,
    *,
    guidance: Guidance | None = None,
    device: torch.device | str = "cpu",
    save_checkpoint: SaveCheckpoint | None = None,
    load_checkpoint: LoadCheckpoint | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    progress: bool = True,
    batched: bool = True,
    resources=None,
    pool_root: str | Path | None = None,
    snapshots: Collection[int] = (),
    save_snapshot: SaveSnapshot | None = None,
) -> dict:
    """Distill ``data`` by ``spec`` in memory; return {"images", "labels", "history", "seconds",
    "learned"} (the method's learned tensors, e.g. MTT's ``learned_lr``). The one entry point of a
    distillation: :func:`~ptmdd_helpers.store.runs.distill_run` (the CLI's and the study's) calls
    it inside the store's job, with the job's checkpoint callbacks.

    ``batched=False`` runs the per-class reference path (same draws, same results up to rounding).
    The method's ``resources`` default to :func:`load_resources` under ``pool_root``. At each
    iteration count k in ``snapshots`` below ``spec.iterations``, ``save_snapshot(result, k)`` gets
    what this function returns for the spec with k iterations (the same tensors).
    """
    validate_spec(spec, data)
    if (spec.guidance is None) != (guidance is None):
        raise ValueError("pass a Guidance exactly when the spec has a guidance section")
    if resources is None:
        resources = load_resources(spec, pool_root)
    replica = Replica(spec, guidance, resources, save_checkpoint, load_checkpoint, snapshots,
                      save_snapshot)
    return run_alone(replica, data, device=device, checkpoint_every=checkpoint_every,
                     progress=progress, batched=batched)


__all__ = [
    "CHECKPOINT_EVERY",
    "LOOPS_BY_IPC", "MTT_BY_IPC", "REGISTRY", "DistillSpec", "DistillState", "Method",
    "TrajectorySpec", "check_spec", "DistillationDiverged", "distill", "get_method",
    "initial_set_key", "initial_synthetic_set", "list_methods", "load_resources",
    "loops_for_ipc", "make_spec", "match_loss", "protocol_for", "real_subset_generator",
    "register_method", "unregister_method", "validate_spec", "with_seed", "Replica",
    "run_replicas",
]
