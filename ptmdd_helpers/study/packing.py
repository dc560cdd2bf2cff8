"""Tasks packed for one process: distillations into batches of replicates, evaluations into one
ensemble over their sets (:func:`pack`), and how many at most (:func:`replicate_batch_size`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..distill import get_method
from ..distill.spec import batch_key
from ..store.evaluations import together_key

if TYPE_CHECKING:
    from .tasks import Task


def pack(task: Task, ready: Sequence[Task], size: int, sets: int = 1) -> list[Task]:
    """``task`` and the ``ready`` tasks one process computes with it: for a distillation whose
    method batches replicates, up to ``size`` − 1 distillations of its shape
    (:func:`~ptmdd_helpers.distill.spec.batch_key`; none only iterations apart); for an
    evaluation, up to ``sets`` − 1 evaluations trained with it as one ensemble
    (:func:`~ptmdd_helpers.store.evaluations.together_key`)."""
    if task.kind == "evaluation" and sets > 1:
        key, limit = together_key(task.spec), sets
        fits = lambda other: together_key(other.spec) == key  # noqa: E731
    elif task.kind == "distill" and size > 1 and \
            get_method(task.spec.method).batch_iteration is not None:
        key, limit, seen = batch_key(task.spec), size, {replace(task.spec, iterations=1)}

        def fits(other: Task) -> bool:  # one shape; none only iterations apart
            stripped = replace(other.spec, iterations=1)
            if batch_key(other.spec) != key or stripped in seen:
                return False
            seen.add(stripped)
            return True
    else:
        return [task]
    group = [task]
    for other in ready:
        if len(group) >= limit:
            break
        if other is not task and other.kind == task.kind and fits(other):
            group.append(other)
    return group


def replicate_batch_size(replicas: int | str | None, device: str) -> int:
    """Distillations per batch of replicates: ``replicas`` if a number; ``"auto"`` (or None): 1 on
    a CPU, where a batch is slower than its runs one by one (benchmarks/README.md), and on a GPU
    one per 8 GiB of its memory, at most 16 (not measured yet: a GPU row is still missing)."""
    if replicas not in (None, "auto"):
        return int(replicas)
    import torch

    from ..networks.training import resolve_device

    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return 1
    memory = torch.cuda.get_device_properties(resolved).total_memory
    return max(1, min(16, memory // 2**33))
