"""Units of work through the run store: a distillation, and an evaluation of any training set.

A training set to evaluate (the *subject*) is a distilled set (:class:`DistillSpec`), a random real
subset of the same size (:class:`RealSubsetSpec`) or the whole training set
(:class:`WholeDatasetSpec`). An :class:`EvaluationSpec` trains ``n_nets`` fresh networks of one
architecture on the subject; since it is stored like every run, the whole-dataset reference is
computed once per dataset, architecture and protocol.

Random streams follow the replicate, not the run id: a distillation's from its replicate key
(:attr:`DistillSpec.replicate_key`), a random real subset's from the initial-set stream of its seed
(it *is* the ``init="real"`` starting set of that seed), and the evaluation networks' from
(dataset, seed, network index, architecture)
(:func:`~ptmdd_helpers.evaluation.training_sets.evaluation_seed_parts`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path

import torch

from ..checks import check_bool, check_eval_nets, check_int
from ..data.datasets import DatasetInfo, LoadedDataset, load_dataset
from ..distill import (
    CHECKPOINT_EVERY,
    REGISTRY,
    DistillationDiverged,
    DistillSpec,
    check_spec,
    distill,
    load_resources,
    real_subset_generator,
    validate_spec,
)
from ..distill.methods import learns_lr
from ..evaluation.evaluate import evaluate_images
from ..evaluation.protocol import EvalProtocol
from ..evaluation.training_sets import evaluation_seed_parts, random_real_subset, summarize
from ..networks.compiling import compile_default
from ..networks.models import list_models
from ..networks.training import check_device, resolve_device
from ..paths import resolve
from ..pools.guidance import Guidance, GuidanceSpec
from .repair import lacking_reason, recompute_fix, recoverable_spec, set_aside_if_broken
from .runfiles import Run, RunError
from .runstore import Job, RunStore


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
        check_eval_nets(self.n_nets, "EvaluationSpec n_nets (evaluation networks, --eval-nets)")
        if not isinstance(self.protocol, EvalProtocol):
            raise ValueError(f"EvaluationSpec protocol must be an EvalProtocol (distill."
                             f"protocol_for), got {type(self.protocol).__name__}")


SPEC_CLASSES = {
    cls.__name__: cls
    for cls in (DistillSpec, GuidanceSpec, RealSubsetSpec, WholeDatasetSpec, EvaluationSpec,
                EvalProtocol)
}


def spec_class(kind: str) -> type:
    """The spec class a stored ``__kind__`` names: a run's, or a registered method's settings."""
    options = {m.options.__name__: m.options for m in REGISTRY.values() if m.options is not None}
    classes = {**SPEC_CLASSES, **options}
    if kind not in classes:
        raise RunError(f"unknown spec kind {kind!r} in a stored run (a method not registered "
                       f"in this process?)")
    return classes[kind]


def spec_from_dict(raw: object) -> object:
    """Rebuild a spec from its stored JSON (``__kind__`` names the class; lists become tuples)."""
    if isinstance(raw, dict):
        fields = {k: spec_from_dict(v) for k, v in raw.items() if k != "__kind__"}
        kind = raw.get("__kind__")
        if kind is None:
            return fields
        return spec_class(kind)(**fields)
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
    checkpoint_every: int = CHECKPOINT_EVERY
    recompute: bool = False  # move a stored run failing verification aside and compute it again
    compile: bool | None = None  # compiled evaluation training (.compiling); None: the default
    # iteration counts at which a distillation also stores its set, as the run of its spec with
    # that many iterations (the same tensors): a gain-versus-iterations curve from one run
    snapshots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        """Take a folder (str or Path) as the store; refuse values of the wrong type or range."""
        if isinstance(self.store, (str, Path)):
            self.store = RunStore(self.store)
        if not isinstance(self.store, RunStore):
            raise ValueError(f"Workspace store must be a RunStore or a folder (str or Path), "
                             f"got {type(self.store).__name__} ({self.store!r})")
        for name, root in (("data_root", "data"), ("pool_root", "pools")):
            if not isinstance(getattr(self, name), (str, Path, type(None))):
                raise ValueError(f"Workspace {name} must be a folder (str or Path) or None, got "
                                 f"{getattr(self, name)!r}")
            resolve(root, getattr(self, name))  # an empty name or a file: PathError naming the fix
        check_device(self.device)
        check_bool(self.progress, "Workspace progress")
        if self.compile is not None:
            check_bool(self.compile, "Workspace compile (--no-compile, the profile key compile)")
        else:
            compile_default()  # PTMDD_COMPILE: a value neither on nor off is refused here
        check_int(self.checkpoint_every, "--checkpoint-every (Workspace checkpoint_every, "
                  "iterations between checkpoints)", minimum=1)
        if isinstance(self.snapshots, (str, bytes)) or not isinstance(self.snapshots, (list, tuple)):
            raise ValueError(f"Workspace snapshots must be a list of iteration counts (--snapshots "
                             f"100,300; the profile key distill.snapshots), got {self.snapshots!r}")
        for k in self.snapshots:
            check_int(k, "--snapshots (Workspace snapshots: iteration counts)", minimum=1)
        self.snapshots = tuple(sorted(set(self.snapshots)))

    def dataset(self, name: str) -> LoadedDataset:
        """Load ``name`` from this workspace's data root."""
        return load_dataset(name, self.data_root)

    def settings(self) -> dict[str, object]:
        """Plain, picklable values that rebuild this workspace (:meth:`from_settings`), e.g. in
        a worker process; the pool root resolved, so the worker finds the same pools."""
        from ..pools.members import resolve_pool_root

        return {"store": str(self.store.root), "data_root": _text(self.data_root),
                "pool_root": str(resolve_pool_root(self.pool_root)), "device": str(self.device),
                "progress": self.progress, "checkpoint_every": self.checkpoint_every,
                "recompute": self.recompute, "compile": self.compile,
                "snapshots": list(self.snapshots)}

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> Workspace:
        """The one way to build a workspace from named values (the CLI's options, a worker's
        :meth:`settings`, a profile's resolved roots); other keys are ignored, and ``None`` means
        a field's default."""
        defaults = {f.name: f.default for f in dataclass_fields(cls)}
        chosen = {k: v for k, v in settings.items()  # None: the default (store: $PTMDD_RUNS, …)
                  if k in defaults and (v is not None or defaults[k] is None)}
        store = chosen.pop("store", None)
        return cls(store if isinstance(store, RunStore) else RunStore(store), **chosen)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def check_call(spec: object, workspace: object, caller: str, kind: type) -> None:
    """Raise ``ValueError`` naming the argument unless ``spec`` is a ``kind`` and ``workspace`` a
    :class:`Workspace` (before anything is read or written)."""
    if not isinstance(spec, kind):
        raise ValueError(f"{caller}: spec must be a {kind.__name__} (distill.make_spec(...) makes a "
                         f"DistillSpec), got {type(spec).__name__} ({spec!r})")
    if not isinstance(workspace, Workspace):
        raise ValueError(f"{caller}: workspace must be a Workspace, e.g. Workspace('runs/store') "
                         f"(a run store folder), got {type(workspace).__name__} ({workspace!r})")


def distill_run(spec: DistillSpec, workspace: Workspace) -> Run:
    """Return the stored distillation for ``spec``, computing (or resuming) it if needed."""
    check_call(spec, workspace, "distill_run", DistillSpec)
    check_spec(spec, "distill_run")  # before the store, the data or the pool is touched
    device = resolve_device(workspace.device)
    existing = workspace.store.get(spec)
    if existing is not None:
        return existing
    data = workspace.dataset(spec.dataset)
    validate_spec(spec, data)  # against the data and the pool, before anything is written
    guidance = (Guidance(spec.guidance, data, device=device, pool_root=workspace.pool_root)
                if spec.guidance is not None else None)
    resources = load_resources(spec, workspace.pool_root)  # MTT's experts: checked before writing
    with workspace.store.computing(spec, device=str(device),
                                   recompute=workspace.recompute) as job:
        if job.run is not None:  # another process computed it meanwhile
            return job.run
        ctx = job.context
        try:
            result = distill(
                spec, data, guidance=guidance, device=device,
                save_checkpoint=ctx.save_checkpoint, load_checkpoint=ctx.load_checkpoint,
                checkpoint_every=workspace.checkpoint_every, progress=workspace.progress,
                resources=resources, snapshots=workspace.snapshots,
                save_snapshot=_snapshot_saver(spec, workspace, str(device), data.info, job),
            )
        except DistillationDiverged as diverged:
            ctx.save_tensors({"images": diverged.images, "labels": diverged.labels}, "last_good")
            raise DistillationDiverged(
                f"{diverged} in {ctx.path / 'last_good.pt'}", diverged.images, diverged.labels
            ) from None
        return _complete_distillation(job, spec, data.info, result)


def _complete_distillation(job: Job, spec: DistillSpec, info: DatasetInfo, result: dict) -> Run:
    """Store what :func:`distill` returned for ``spec`` as the job's run: tensors, grid, metrics."""
    ctx = job.context
    learned = result["learned"]  # e.g. MTT's learned_lr, which its evaluation trains at
    ctx.save_tensors({"images": result["images"], "labels": result["labels"], **learned})
    ctx.save_image_grid(result["images"], info.mean, info.std,
                        nrow=spec.ipc if spec.ipc > 1 else info.num_classes)
    ctx.add_timing("distill_seconds", result["seconds"])
    history = result["history"]
    return job.complete({
        "iterations": len(history),
        "final_loss": history[-1] if history else None,
        "loss_history": history,
        "distill_seconds": result["seconds"],
        **{name: float(t) for name, t in learned.items() if t.numel() == 1},
    })


def _snapshot_saver(spec: DistillSpec, workspace: Workspace, device: str, info: DatasetInfo,
                    parent: Job):
    """The callback that stores the set after k iterations as the run of ``spec`` with k
    iterations (unless the store has it); a snapshot the store refuses is a warning, not an error
    of the run that records it."""

    def save(result: dict, k: int) -> None:
        snapshot = replace(spec, iterations=k)
        try:  # computing() serves a stored k-run as it is
            with workspace.store.computing(snapshot, device=device,
                                           recompute=workspace.recompute) as job:
                if job.run is None:
                    job.context.log(f"recorded at iteration {k} of {parent.context.path.name}")
                    _complete_distillation(job, snapshot, info, result)
        except RunError as error:
            warnings.warn(f"the snapshot at iteration {k} was not stored: {error}", RuntimeWarning,
                          stacklevel=2)

    return save


def training_set(subject: Subject, workspace: Workspace) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels of ``subject`` (a distilled set is computed if not stored; with
    ``workspace.recompute`` a stored one that fails verification or lacks its learned lr is
    moved to the quarantine and computed again, :func:`~.run_repair.set_aside_if_broken`)."""
    if isinstance(subject, DistillSpec):
        if workspace.recompute:
            set_aside_if_broken(workspace.store, subject)
        run = distill_run(subject, workspace)
        tensors = run.tensors()
        lacking = lacking_reason(subject, tensors)
        if lacking is not None:  # a legacy run; with recompute it was set aside above
            raise RunError(f"cannot evaluate the stored distillation {run.id}: {lacking}. Fix: "
                           f"{recompute_fix(run.id, workspace.store.root)}")
        return tensors["images"], tensors["labels"]
    data = workspace.dataset(subject.dataset)
    if isinstance(subject, RealSubsetSpec):
        return random_real_subset(
            data, subject.ipc, real_subset_generator(subject.dataset, subject.ipc, subject.seed)
        )
    return data.train_images, data.train_labels


def training_protocol(spec: EvaluationSpec) -> EvalProtocol:
    """``spec.protocol``, refused when it asks for a learned lr that its subject did not learn."""
    if spec.protocol.learned_lr and not subject_learns_lr(spec.subject):
        raise ValueError(
            f"the evaluation protocol trains at the learned lr (learned_lr=True, MTT's protocol), "
            f"but its subject ({type(spec.subject).__name__}"
            f"{' ' + spec.subject.method if isinstance(spec.subject, DistillSpec) else ''}) learned "
            f"none: only methods that learn a learning rate (MTT) do. Use learned_lr=False (a "
            f"fixed lr) for it"
        )
    return spec.protocol


def subject_learns_lr(subject: object) -> bool:
    """Whether ``subject`` is a distillation whose method learns the lr its evaluation trains at."""
    return isinstance(subject, DistillSpec) and learns_lr(subject.method)


def stored_distillation(id_or_path: str | Path, workspace: Workspace) -> object:
    """The spec of the stored run ``id_or_path``; with ``workspace.recompute`` also of a run that
    fails verification (read from its ``spec.json``), which :func:`training_set` recomputes."""
    try:
        return spec_from_dict(workspace.store.load(id_or_path).spec)
    except RunError:
        if not workspace.recompute:
            raise
        return spec_from_dict(recoverable_spec(workspace.store, id_or_path))


def subject_seed(subject: Subject) -> int:
    """The replicate (seed) of a training set; the whole training set is replicate 0."""
    return int(getattr(subject, "seed", 0))


def evaluation_run(spec: EvaluationSpec, workspace: Workspace) -> Run:
    """Return the stored evaluation for ``spec``, training its networks if needed; an interrupted
    one keeps its finished networks (or ensemble groups) in its checkpoint and trains the rest."""
    check_call(spec, workspace, "evaluation_run", EvaluationSpec)
    if spec.arch not in list_models():
        raise ValueError(f"unknown model {spec.arch!r}; valid: {', '.join(list_models())}")
    device = resolve_device(workspace.device)
    if workspace.recompute:  # a stored evaluation failing verification: quarantined, computed again
        set_aside_if_broken(workspace.store, spec)
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
        ctx = job.context
        saved = ctx.load_checkpoint()  # the rows of the networks finished before an interruption
        rows = evaluate_images(
            images, labels, workspace.dataset(spec.subject.dataset), [spec.arch], spec.n_nets,
            protocol, evaluation_seed_parts(spec.subject.dataset, subject_seed(spec.subject)),
            device=str(device), progress=workspace.progress, compile=workspace.compile,
            finished=saved[0].get("rows", ()) if saved and isinstance(saved[0], dict) else (),
            on_rows=lambda done: ctx.save_checkpoint({"rows": done}, len(done)),
        )
        job.context.add_timing("evaluate_seconds", sum(row["seconds"] for row in rows))
        metrics = {"rows": rows, "summary": summarize(rows)[spec.arch]}
        if spec.protocol.learned_lr:
            metrics["lr"] = protocol.lr  # the learned lr the networks trained at
        return job.complete(metrics)
