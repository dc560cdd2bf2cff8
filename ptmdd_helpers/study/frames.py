"""The study's frames: a grid's results, its distillations and its pool members, as tidy tables.

Rows are built by :func:`ptmdd_helpers.store.frames.run_records`, the builder the store's own frame uses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..distill import DistillSpec
from ..pools.pool import member_log
from ..store.frames import run_records, tidy_frame
from ..store.runs import Workspace
from .grid import Grid
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

    from ..pools.members import resolve_pool_root

    root = resolve_pool_root((ws or workspace(grid.params)).pool_root)
    records = []
    for member in grid.members:
        log = member_log(member, root)
        identity = {"source": member.source, "arch": member.arch, "seed": member.seed,
                    "recipe": member.recipe_name}
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


def synthetic_sets(grid: Grid, ws: Workspace | None = None, seed: int | None = None) -> list[dict]:
    """The stored synthetic sets of one seed (default: the grid's first), baseline first.

    One entry per distillation of that seed at the grid's first IPC and target: ``label`` (what
    distinguishes it: its labels that vary between the sets), ``method``, ``baseline`` (whether it
    is a baseline), ``dataset``, ``images`` and ``labels`` (tensors as stored).
    """
    ws = ws or workspace(grid.params)
    distills = [(dict(i.labels), i.spec.subject) for i in grid.items
                if isinstance(i.spec.subject, DistillSpec)]
    if not distills:
        return []
    first = distills[0][1]
    seed = first.seed if seed is None else seed
    chosen, seen = [], set()
    for labels, spec in distills:
        if (spec.seed, spec.ipc, spec.dataset) != (seed, first.ipc, first.dataset) or spec in seen:
            continue
        seen.add(spec)
        chosen.append((labels, spec))
    keys = [k for k in dict.fromkeys(k for labels, _ in chosen for k in labels)
            if k not in ("ipc", "target") and len({str(lb.get(k)) for lb, _ in chosen}) > 1
            and not any(isinstance(lb.get(k), bool) for lb, _ in chosen)]  # flags: no label
    sets = []
    for labels, spec in chosen:
        run = ws.store.get(spec)
        if run is None:  # diverged or missing: nothing to show
            continue
        tensors = run.tensors()
        text = ", ".join(str(labels[k]) if k in ("condition", "method") else f"{k} {labels[k]}"
                         for k in keys if k in labels)
        sets.append({"label": text or labels.get("condition", ""), "method": spec.method,
                     "baseline": labels.get("condition") == "baseline", "dataset": spec.dataset,
                     "images": tensors["images"], "labels": tensors["labels"]})
    return sets


def pool_diversity_frame(grid: Grid, ws: Workspace | None = None, max_images: int = 2000,
                         ) -> pd.DataFrame:
    """One row per PTM pool that guides ``grid``: its labels and its diversity.

    Columns: the items' labels that name the pool (e.g. ``n_models`` in 01, ``pool`` in 02), the
    pool's ``source``, ``archs``, ``n_models``, ``epoch``, and ``disagreement`` and
    ``cka_distance`` from :func:`ptmdd_helpers.pools.diversity.pool_diversity` (docs/method.md).
    """
    import pandas as pd

    from ..pools.diversity import pool_diversity

    ws = ws or workspace(grid.params)
    skip = {"method", "ipc", "condition", "target"}
    pools: dict[Any, dict[str, Any]] = {}
    for item in grid.items:
        subject = item.spec.subject
        g = getattr(subject, "guidance", None)
        if g is None or g.ptm_only:
            continue
        key = (g.source, g.archs, g.n_models, g.epoch, g.pool_recipe)
        if key not in pools:
            pools[key] = {k: v for k, v in item.labels if k not in skip}
    records = []
    for (source, archs, n_models, epoch, identity), labels in pools.items():
        measured = pool_diversity(source, archs, n_models, epoch, pool_root=ws.pool_root,
                                  data_root=ws.data_root, device=str(ws.device),
                                  max_images=max_images, pool_recipe=identity)
        records.append({**labels, "source": source, "archs": "+".join(archs),
                        "n_models": n_models, "epoch": epoch, **measured})
    return pd.DataFrame.from_records(records)
