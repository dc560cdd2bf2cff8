"""Units of work through the run store: a distillation, and an evaluation of any training set.

A training set to evaluate (the *subject*) is a distilled set (:class:`DistillSpec`), a random real
subset of the same size (:class:`RealSubsetSpec`) or the whole training set
(:class:`WholeDatasetSpec`). An :class:`EvaluationSpec` trains ``n_nets`` fresh networks of one
architecture on the subject; since it is stored like every run, the whole-dataset reference is
computed once per dataset, architecture and protocol.

Random streams follow the replicate, not the run id: a distillation's from its replicate key
(:attr:`DistillSpec.replicate_key`), a random real subset's from the initial-set stream of its seed
(it *is* the ``init="real"`` starting set of that seed), and the evaluation networks' from
(dataset, seed, network index, architecture) (:func:`~.evaluate.evaluation_seed_parts`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .checks import check_bool, check_int
from .data import LoadedDataset, load_dataset
from .distill import (
    ITERATIONS,
    DistillationDiverged,
    DistillSpec,
    TrajectorySpec,
    check_spec,
    experts_for,
    real_subset_generator,
    run_distillation,
    validate_spec,
)
from .evaluate import (
    EvalProtocol,
    evaluate_images,
    evaluation_seed_parts,
    random_real_subset,
    summarize,
)
from .guidance import Guidance, GuidanceSpec
from .models import list_models
from .store import Run, RunError, RunStore
from .training import check_device, resolve_device


@dataclass(frozen=True)
class RealSubsetSpec:
    """``ipc`` random real training images per class (replicate ``seed``)."""

    dataset: str
    ipc: int
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.ipc, "RealSubsetSpec ipc (images per class)", minimum=1)
        check_int(self.seed, "RealSubsetSpec seed (the replicate index)", minimum=0)


@dataclass(frozen=True)
class WholeDatasetSpec:
    """The whole training set of ``dataset``."""

    dataset: str


Subject = DistillSpec | RealSubsetSpec | WholeDatasetSpec


@dataclass(frozen=True)
class EvaluationSpec:
    """Train ``n_nets`` fresh ``arch`` networks on ``subject`` by ``protocol``; test each."""

    subject: Subject
    arch: str
    n_nets: int
    protocol: EvalProtocol

    def __post_init__(self) -> None:
        if not isinstance(self.subject, (DistillSpec, RealSubsetSpec, WholeDatasetSpec)):
            raise ValueError(f"EvaluationSpec subject must be a DistillSpec, RealSubsetSpec or "
                             f"WholeDatasetSpec, got {type(self.subject).__name__}")
        if not isinstance(self.arch, str):
            raise ValueError(f"EvaluationSpec arch must be an architecture name, got {self.arch!r}")
        check_int(self.n_nets, "EvaluationSpec n_nets (evaluation networks, --eval-nets)",
                  minimum=1)
        if not isinstance(self.protocol, EvalProtocol):
            raise ValueError(f"EvaluationSpec protocol must be an EvalProtocol (evaluate."
                             f"protocol_for), got {type(self.protocol).__name__}")


SPEC_CLASSES = {
    cls.__name__: cls
    for cls in (DistillSpec, GuidanceSpec, TrajectorySpec, RealSubsetSpec, WholeDatasetSpec,
                EvaluationSpec, EvalProtocol)
}


def spec_from_dict(raw: object) -> object:
    """Rebuild a spec from its stored JSON (``__kind__`` names the class; lists become tuples)."""
    if isinstance(raw, dict):
        fields = {k: spec_from_dict(v) for k, v in raw.items() if k != "__kind__"}
        kind = raw.get("__kind__")
        if kind is None:
            return fields
        if kind not in SPEC_CLASSES:
            raise RunError(f"unknown spec kind {kind!r} in a stored run")
        return SPEC_CLASSES[kind](**fields)
    if isinstance(raw, list):
        return tuple(spec_from_dict(v) for v in raw)
    return raw


@dataclass
class Workspace:
    """Where runs, data and pools live and how to compute (none of it changes a result)."""

    store: RunStore
    data_root: str | Path | None = None
    pool_root: str | Path | None = None
    device: str = "auto"
    progress: bool = True
    checkpoint_every: int = 50
    recompute: bool = False  # move a stored run failing verification aside and compute it again
    compile: bool | None = None  # compiled evaluation training (.compiling); None: the default

    def __post_init__(self) -> None:
        """Take a folder (str or Path) as the store; refuse values of the wrong type or range."""
        if isinstance(self.store, (str, Path)):
            self.store = RunStore(self.store)
        if not isinstance(self.store, RunStore):
            raise ValueError(f"Workspace store must be a RunStore or a folder (str or Path), "
                             f"got {type(self.store).__name__} ({self.store!r})")
        for name in ("data_root", "pool_root"):
            if not isinstance(getattr(self, name), (str, Path, type(None))):
                raise ValueError(f"Workspace {name} must be a folder (str or Path) or None, got "
                                 f"{getattr(self, name)!r}")
        check_device(self.device)
        check_bool(self.progress, "Workspace progress")
        if self.compile is not None:
            check_bool(self.compile, "Workspace compile (--no-compile, the profile key compile)")
        check_int(self.checkpoint_every, "--checkpoint-every (Workspace checkpoint_every, "
                  "iterations between checkpoints)", minimum=1)

    def dataset(self, name: str) -> LoadedDataset:
        """Load ``name`` from this workspace's data root."""
        return load_dataset(name, self.data_root)


def distill_run(spec: DistillSpec, workspace: Workspace) -> Run:
    """Return the stored distillation for ``spec``, computing (or resuming) it if needed."""
    check_spec(spec, "distill_run")  # before the store, the data or the pool is touched
    device = resolve_device(workspace.device)
    existing = workspace.store.get(spec)
    if existing is not None:
        return existing
    data = workspace.dataset(spec.dataset)
    validate_spec(spec, data)  # against the data and the pool, before anything is written
    guidance = (Guidance(spec.guidance, data, device=device, pool_root=workspace.pool_root)
                if spec.guidance is not None else None)
    experts = experts_for(spec, workspace.pool_root)  # MTT: checked before anything is written
    with workspace.store.computing(spec, device=str(device),
                                   recompute=workspace.recompute) as job:
        if job.run is not None:  # another process computed it meanwhile
            return job.run
        ctx = job.context
        try:
            result = run_distillation(
                spec, data, ITERATIONS[spec.method], guidance=guidance, device=device,
                save_checkpoint=ctx.save_checkpoint, load_checkpoint=ctx.load_checkpoint,
                checkpoint_every=workspace.checkpoint_every, progress=workspace.progress,
                experts=experts,
            )
        except DistillationDiverged as diverged:
            ctx.save_tensors({"images": diverged.images, "labels": diverged.labels}, "last_good")
            raise DistillationDiverged(
                f"{diverged} in {ctx.path / 'last_good.pt'}", diverged.images, diverged.labels
            ) from None
        tensors = {"images": result["images"], "labels": result["labels"]}
        if result["learned_lr"] is not None:  # MTT: the lr its evaluation trains with
            tensors["learned_lr"] = torch.tensor(result["learned_lr"])
        ctx.save_tensors(tensors)
        info = data.info
        ctx.save_image_grid(result["images"], info.mean, info.std,
                            nrow=spec.ipc if spec.ipc > 1 else info.num_classes)
        ctx.add_timing("distill_seconds", result["seconds"])
        history = result["history"]
        return job.complete({
            "iterations": len(history),
            "final_loss": history[-1] if history else None,
            "loss_history": history,
            "distill_seconds": result["seconds"],
            **({"learned_lr": result["learned_lr"]} if result["learned_lr"] is not None else {}),
        })


def training_set(subject: Subject, workspace: Workspace) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of ``subject`` (a distilled set is computed if not stored)."""
    if isinstance(subject, DistillSpec):
        tensors = distill_run(subject, workspace).tensors()
        return tensors["images"], tensors["labels"]
    data = workspace.dataset(subject.dataset)
    if isinstance(subject, RealSubsetSpec):
        return random_real_subset(
            data, subject.ipc, real_subset_generator(subject.dataset, subject.ipc, subject.seed)
        )
    return data.train_images, data.train_labels


def training_protocol(spec: EvaluationSpec) -> EvalProtocol:
    """``spec.protocol``, refused when it asks for a learned lr that its subject did not learn."""
    learns = isinstance(spec.subject, DistillSpec) and spec.subject.trajectory is not None
    if spec.protocol.learned_lr and not learns:
        raise ValueError(
            f"the evaluation protocol trains at the learned lr (learned_lr=True, MTT's protocol), "
            f"but its subject ({type(spec.subject).__name__}"
            f"{' ' + spec.subject.method if isinstance(spec.subject, DistillSpec) else ''}) learned "
            f"none: only MTT distillations do. Use learned_lr=False (a fixed lr) for it"
        )
    return spec.protocol


def subject_seed(subject: Subject) -> int:
    """The replicate (seed) of a training set; the whole training set is replicate 0."""
    return int(getattr(subject, "seed", 0))


def evaluation_run(spec: EvaluationSpec, workspace: Workspace) -> Run:
    """Return the stored evaluation for ``spec``, training its networks if needed."""
    if spec.arch not in list_models():
        raise ValueError(f"unknown model {spec.arch!r}; valid: {', '.join(list_models())}")
    device = resolve_device(workspace.device)
    existing = workspace.store.get(spec)
    if existing is not None:
        return existing
    protocol = training_protocol(spec)
    images, labels = training_set(spec.subject, workspace)  # before this run's lock
    with workspace.store.computing(spec, device=str(device),
                                   recompute=workspace.recompute) as job:
        if job.run is not None:
            return job.run
        if protocol.learned_lr:  # MTT: the lr the stored distillation learned
            learned = distill_run(spec.subject, workspace).tensors()["learned_lr"]
            protocol = replace(protocol, lr=float(learned), learned_lr=False)
        rows = evaluate_images(
            images, labels, workspace.dataset(spec.subject.dataset), [spec.arch], spec.n_nets,
            protocol, evaluation_seed_parts(spec.subject.dataset, subject_seed(spec.subject)),
            device=str(device), progress=workspace.progress, compile=workspace.compile,
        )
        job.context.add_timing("evaluate_seconds", sum(row["seconds"] for row in rows))
        metrics = {"rows": rows, "summary": summarize(rows)[spec.arch]}
        if spec.protocol.learned_lr:
            metrics["lr"] = protocol.lr  # the learned lr the networks trained at
        return job.complete(metrics)
