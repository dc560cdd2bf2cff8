"""The loop over iterations: checkpoints, resume, snapshots and the NaN stop, for one distillation
or a batch of replicates computed together.

A batch (:func:`run_replicas`) holds distillations of one shape (:func:`~.spec.batch_key`: the
same spec but for the seed, the iteration count and the guidance point). Each replicate keeps
everything of its own: its :class:`~.engine.DistillState` (images, optimizer, random streams,
guidance), its checkpoints, snapshots and history; only the method's iteration is computed for
all of them at once (the method's ``batch_iteration``; :mod:`.stacked`). So a replicate draws
exactly the streams of its run alone, is checkpointed and resumed on its own (its checkpoint is
that of the run alone: a batch resumes a run started alone and the reverse), leaves the batch
when it has done its iterations, and a replicate that diverges stops alone. A distillation alone
(:func:`run_alone`, which ``distill.distill`` calls) is a batch of one with the method's own
``iteration``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..data.augment import DSAConfig
from ..data.datasets import LoadedDataset
from ..pools.guidance import Guidance
from .engine import (
    CHECKPOINT_EVERY,
    LOG_EVERY,
    DistillationDiverged,
    DistillState,
    LoadCheckpoint,
    SaveCheckpoint,
    SaveSnapshot,
    initial_synthetic_set,
)
from .methods import get_method
from .spec import DistillSpec, batch_key


@dataclass
class Replica:
    """One distillation of a batch: its spec and what is its own (guidance, resources, checkpoint
    and snapshot callbacks). After :func:`run_replicas`, ``result`` (what ``distill.distill``
    returns) or ``error`` (:class:`~.engine.DistillationDiverged`) is set."""

    spec: DistillSpec
    guidance: Guidance | None = None
    resources: object | None = None
    save_checkpoint: SaveCheckpoint | None = None
    load_checkpoint: LoadCheckpoint | None = None
    snapshots: Collection[int] = ()
    save_snapshot: SaveSnapshot | None = None
    result: dict | None = None
    error: DistillationDiverged | None = None
    state: DistillState | None = field(default=None, repr=False)
    history: list[float] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    start: int = 0
    pending: list[torch.Tensor] = field(default_factory=list, repr=False)
    verified: torch.Tensor | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the replicate has left its batch (done, or stopped by divergence)."""
        return self.result is not None or self.error is not None


def _checked_losses(
    pending: list[torch.Tensor], images: torch.Tensor, *, start: int, spec: DistillSpec,
    verified: torch.Tensor, labels: torch.Tensor, learned: dict[str, torch.Tensor],
) -> list[float]:
    """The pending losses as floats (one read from the device), after checking that they, the
    synthetic images and the learned tensors (MTT's lr) are finite; else
    :class:`DistillationDiverged` with the ``verified`` set."""
    losses = torch.stack(pending).tolist()
    bad = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
    finite = bool(torch.isfinite(images.detach()).all()) and all(
        bool(torch.isfinite(t.detach()).all()) for t in learned.values())
    if bad is None and finite:
        return losses
    what = (f"the {spec.method} loss became {losses[bad]} at iteration {start + bad}"
            if bad is not None else
            f"the synthetic images (or the learned lr) became non-finite by iteration "
            f"{start + len(losses) - 1}")
    raise DistillationDiverged(
        f"{what}; stopped and kept the last good synthetic set (the one before iteration {start})",
        verified.cpu(), labels.cpu(),
    )


def _start(replica: Replica, data: LoadedDataset, device: torch.device, batched: bool) -> None:
    """Build the replicate's state: its initial set (or its checkpoint), optimizer and streams."""
    spec = replica.spec
    method = get_method(spec.method)
    images, labels = initial_synthetic_set(spec, data)
    images = images.to(device).requires_grad_(True)
    labels = labels.to(device)
    groups = [{"params": [images]}]
    learned: dict[str, torch.Tensor] = {}
    for name, (tensor, options) in (method.learned(spec, device) if method.learned else {}).items():
        learned[name] = tensor.to(device).requires_grad_(True)
        groups.append({"params": [learned[name]], **options})
    optimizer = torch.optim.SGD(groups, lr=spec.lr_img, momentum=spec.momentum_img)
    restored = replica.load_checkpoint() if replica.load_checkpoint is not None else None
    if restored is not None:
        saved, replica.start = restored
        with torch.no_grad():
            images.copy_(saved["images"].to(device))
            for name, tensor in learned.items():
                tensor.copy_(saved[name].to(device))
        optimizer.load_state_dict(saved["optimizer"])
        replica.history, replica.seconds = list(saved["history"]), float(saved["seconds"])
    dsa = DSAConfig() if spec.dsa_flip else DSAConfig().without_flip()
    replica.state = DistillState(spec, data, images, labels, optimizer, replica.guidance, device,
                                 dsa, iteration=replica.start, batched=batched, learned=learned,
                                 resources=replica.resources)
    replica.snapshots = ({int(k) for k in replica.snapshots if 0 < int(k) < spec.iterations}
                         if replica.save_snapshot else set())
    replica.verified = images.detach().clone()  # the last synthetic set known to be finite
    if replica.start >= spec.iterations:
        replica.result = _result(replica)


def _advance(replica: Replica, loss: torch.Tensor, checkpoint_every: int, tic: float) -> None:
    """Book the loss of the replicate's iteration; at its logging points read and check the losses
    (a divergence sets ``error``), save its snapshot and checkpoint when due; finish it at the end."""
    state, spec = replica.state, replica.spec
    replica.pending.append(loss)
    done = state.iteration + 1
    checkpoint_due = (replica.save_checkpoint is not None and done % checkpoint_every == 0
                      and done < spec.iterations)
    if checkpoint_due or done in replica.snapshots or done % LOG_EVERY == 0 \
            or done == spec.iterations:
        try:
            losses = _checked_losses(replica.pending, state.images, start=done - len(replica.pending),
                                     spec=spec, verified=replica.verified, labels=state.labels,
                                     learned=state.learned)
        except DistillationDiverged as diverged:
            replica.error = diverged
            return
        replica.history.extend(losses)
        replica.pending.clear()
        replica.verified = state.images.detach().clone()
    replica.seconds += time.perf_counter() - tic
    if done in replica.snapshots:  # before the checkpoint: a crash while it is saved repeats it
        replica.save_snapshot(_result(replica), done)
    if checkpoint_due:
        checkpoint = {"images": state.images.detach().cpu(), "optimizer": state.optimizer.state_dict(),
                      "history": replica.history, "seconds": replica.seconds}
        checkpoint.update({name: t.detach().cpu() for name, t in state.learned.items()})
        replica.save_checkpoint(checkpoint, done)
    state.iteration = done
    if done >= spec.iterations:
        replica.result = _result(replica)


def run_replicas(
    replicas: Sequence[Replica],
    data: LoadedDataset,
    *,
    device: torch.device | str = "cpu",
    checkpoint_every: int = CHECKPOINT_EVERY,
    progress: bool = True,
    batched: bool = True,
    iterate: Callable[[list[DistillState]], list[torch.Tensor]] | None = None,
) -> list[Replica]:
    """Run the replicates' iterations together; return them, each with its ``result`` or
    ``error`` (a divergence stops its replicate alone; the others go on).

    The replicates must share their :func:`~.spec.batch_key`; ``iterate`` computes one iteration
    of every given state (default: the method's ``batch_iteration``). Each replicate's
    ``seconds`` gets an equal share of the time its batch's iterations took.
    """
    replicas = list(replicas)
    if not replicas:
        return replicas
    keys = {batch_key(r.spec) for r in replicas}
    if len(keys) > 1:
        raise ValueError("replicates batched together must share every setting but the seed, the "
                         "iteration count and the guidance point (distill.spec.batch_key); got "
                         f"{len(keys)} different shapes")
    method = get_method(replicas[0].spec.method)
    if iterate is None:
        if method.batch_iteration is None:
            raise ValueError(f"{method.name} has no replicate-batched iteration; run its "
                             "distillations one at a time (distill.distill)")
        iterate = method.batch_iteration
    device = torch.device(device)
    for replica in replicas:
        _start(replica, data, device, batched)
    active = [r for r in replicas if not r.finished]
    first = replicas[0].spec
    bar = tqdm(total=max(r.spec.iterations for r in replicas), disable=not progress,
               initial=min((r.start for r in active), default=0), unit="it",
               desc=f"{first.method} {data.info.name} IPC{first.ipc}"
                    + (f" ×{len(replicas)}" if len(replicas) > 1 else ""))
    while active:
        tic = time.perf_counter()
        losses = iterate([r.state for r in active])
        share = (time.perf_counter() - tic) / len(active)
        for replica, loss in zip(active, losses, strict=True):
            _advance(replica, loss, checkpoint_every, time.perf_counter() - share)
        if active[0].history:
            bar.set_postfix(loss=f"{active[0].history[-1]:.4g}")
        bar.update(1)
        active = [r for r in active if not r.finished]
    bar.close()
    return replicas


def run_alone(replica: Replica, data: LoadedDataset, **options) -> dict:
    """Run one replicate alone with its method's own ``iteration`` (``options``: those of
    :func:`run_replicas`); return its result, or raise its
    :class:`~.engine.DistillationDiverged`."""
    iteration = get_method(replica.spec.method).iteration
    run_replicas([replica], data, iterate=lambda states: [iteration(s) for s in states], **options)
    if replica.error is not None:
        raise replica.error
    return replica.result


def _result(replica: Replica) -> dict:
    """What a run returns after its last iteration so far (copies on the CPU)."""
    state = replica.state
    return {"images": state.images.detach().cpu(), "labels": state.labels.cpu(),
            "history": list(replica.history), "seconds": replica.seconds,
            "learned": {name: t.detach().cpu() for name, t in state.learned.items()}}
