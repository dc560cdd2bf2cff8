"""Distillations packed into batches of replicates: which ready ones a process computes
together (:func:`pack`) and how many at most (:func:`replicate_batch_size`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..distill import get_method
from ..distill.spec import batch_key

if TYPE_CHECKING:
    from .tasks import Task


def pack(task: Task, ready: Sequence[Task], size: int) -> list[Task]:
    """``task`` and, if it is a distillation whose method batches replicates, up to ``size`` − 1
    of the ``ready`` distillations of its shape (:func:`~ptmdd_helpers.distill.spec.batch_key`;
    none only iterations apart): what one process computes as one batch."""
    if size <= 1 or task.kind != "distill" or get_method(task.spec.method).batch_iteration is None:
        return [task]
    key, group = batch_key(task.spec), [task]
    seen = {replace(task.spec, iterations=1)}
    for other in ready:
        if len(group) >= size:
            break
        if other is task or other.kind != "distill" or batch_key(other.spec) != key:
            continue
        stripped = replace(other.spec, iterations=1)
        if stripped not in seen:
            seen.add(stripped)
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
