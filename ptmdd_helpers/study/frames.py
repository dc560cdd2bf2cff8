"""The study's frames: a grid's results, its distillations and its pool members, as tidy tables.

Rows are built by :func:`ptmdd_helpers.frames.run_records`, the builder the store's own frame uses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..distill import DistillSpec
from ..frames import run_records, tidy_frame
from ..pools import member_log
from ..runs import Workspace
from .grids import Grid
from .roots import workspace

if TYPE_CHECKING:
    import pandas as pd


def _labels(grid: Grid) -> list[str]:
    return ["notebook", *dict.fromkeys(key for item in grid.items for key, _ in item.labels)]


def result_frame(grid: Grid, ws: Workspace | None = None) -> pd.DataFrame:
    """One row per evaluated network of ``grid`` (stored runs only): labels, spec fields, metrics.

    ``attrs["missing"]`` lists the grid's evaluations without a stored run (e.g. a diverged
    distillation).
    """
    ws = ws or workspace(grid.params)
    records, missing = [], []
    for item in grid.items:
        run = ws.store.get(item.spec)
        if run is None:
            missing.append(item)
            continue
        records += run_records(run, {"notebook": grid.notebook, **dict(item.labels)})
    table = tidy_frame(records, _labels(grid))
    table.attrs["missing"] = [dict(i.labels) | {"run": i.spec.subject} for i in missing]
    return table


def distillation_frame(grid: Grid, ws: Workspace | None = None) -> pd.DataFrame:
    """One row per stored distillation of ``grid``: labels, spec fields, time, final loss."""
    ws = ws or workspace(grid.params)
    records, seen = [], set()
    for item in grid.items:
        subject = item.spec.subject
        if not isinstance(subject, DistillSpec) or subject in seen:
            continue
        seen.add(subject)
        run = ws.store.get(subject)
        if run is not None:
            records += run_records(run, {"notebook": grid.notebook, **dict(item.labels)})
    return tidy_frame(records, _labels(grid))


def pool_frame(grid: Grid, ws: Workspace | None = None, per_epoch: bool = False) -> pd.DataFrame:
    """Pool members of ``grid``: training time, storage, final test accuracy (or every epoch)."""
    import pandas as pd

    from ..pools import resolve_pool_root

    root = resolve_pool_root((ws or workspace(grid.params)).pool_root)
    records = []
    for member in grid.members:
        log = member_log(member.source, member.arch, member.seed, root)
        identity = {"source": member.source, "arch": member.arch, "seed": member.seed}
        if per_epoch:
            records += [{**identity, "epoch": e["epoch"], "test_acc": e["test_acc"]}
                        for e in log.epochs]
            continue
        files = [p for p in member.directory(root).iterdir() if p.is_file()]
        records.append({
            **identity,
            "epochs": log.completed,
            "train_seconds": log.seconds,
            "checkpoints": sum(p.name.startswith("epoch_") for p in files),
            "storage_MB": sum(p.stat().st_size for p in files) / 2**20,
            "final_test_acc": log.epochs[-1]["test_acc"] if log.epochs else math.nan,
        })
    return pd.DataFrame.from_records(records)
