"""Units of work through the run store: their specs, the :class:`Workspace`, and distillations,
one at a time (:func:`distill_run`) or as replicates computed together (:func:`distill_runs`);
evaluations are in :mod:`.evaluations`.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path

from ..checks import check_bool, check_eval_nets, check_int
from ..data.datasets import DatasetInfo, LoadedDataset, load_dataset
from ..distill import (
    CHECKPOINT_EVERY,
    REGISTRY,
    DistillationDiverged,
    DistillSpec,
    Replica,
    check_spec,
    distill,
    load_resources,
    run_replicas,
    validate_spec,
)
from ..distill.spec import batch_key
from ..evaluation.protocol import EvalProtocol
from ..networks.compiling import compile_default
from ..networks.training import check_device, resolve_device
from ..paths import resolve
from ..pools.guidance import Guidance, GuidanceSpec
from ..specs import spec_id
from ..work import computed_count
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
    guidance, resources = _inputs(spec, data, workspace, device)
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
            raise _keep_last_good(job, diverged) from None
        return _complete_distillation(job, spec, data.info, result)


def _inputs(spec: DistillSpec, data: LoadedDataset, workspace: Workspace, device,
            loaded: dict | None = None) -> tuple:
    """The spec checked against the data and the pool, its guidance and its method's resources
    (MTT's experts), all before anything is written. ``loaded`` keeps the guidances built so far
    by their spec: replicates guided by one pool share its loaded members (a guidance draws from
    the generator it is given and holds no other state)."""
    validate_spec(spec, data)
    loaded = {} if loaded is None else loaded
    if spec.guidance is not None and spec.guidance not in loaded:
        loaded[spec.guidance] = Guidance(spec.guidance, data, device=device,
                                         pool_root=workspace.pool_root)
    return loaded.get(spec.guidance), load_resources(spec, workspace.pool_root)


def _keep_last_good(job: Job, diverged: DistillationDiverged) -> DistillationDiverged:
    """Save a diverged run's last good set in its folder; the error, naming that file."""
    ctx = job.context
    ctx.save_tensors({"images": diverged.images, "labels": diverged.labels}, "last_good")
    return DistillationDiverged(f"{diverged} in {ctx.path / 'last_good.pt'}", diverged.images,
                                diverged.labels)


def distill_runs(specs: Sequence[DistillSpec], workspace: Workspace) -> list[tuple[str, object]]:
    """The distillations of ``specs`` as replicates of one batch: those the store lacks are
    computed (or resumed) together (:func:`~ptmdd_helpers.distill.loop.run_replicas`), each under
    its own run id, lock, checkpoint and snapshots, to the tensors of its run alone up to float
    rounding. Returns per spec ``(status, outcome)``: ``("found", run)`` if stored (or finished by
    another process meanwhile), ``("computed", run)``, or ``("diverged", DistillationDiverged)``
    (its last good set saved in its folder; the other replicates went on).

    The specs share every setting but the seed, the iteration count and the guidance point
    (:func:`~ptmdd_helpers.distill.spec.batch_key`), and no two differ only in iterations.
    """
    specs = list(specs)
    for spec in specs:
        check_call(spec, workspace, "distill_runs", DistillSpec)
        check_spec(spec, "distill_runs")
    if len({batch_key(spec) for spec in specs}) > 1:
        raise ValueError("distill_runs: the specs must share every setting but the seed, the "
                         "iteration count and the guidance point (distill.spec.batch_key); group "
                         "them by that key")
    if len({replace(spec, iterations=1) for spec in specs}) < len(specs):
        raise ValueError("distill_runs: two specs differ only in their iteration count; run the "
                         "longer one with snapshots (Workspace snapshots) instead")
    device = resolve_device(workspace.device)
    outcomes: dict[int, tuple[str, object]] = {}
    for index, spec in enumerate(specs):
        stored = workspace.store.get(spec)
        if stored is not None:
            outcomes[index] = ("found", stored)
    pending = sorted((i for i in range(len(specs)) if i not in outcomes),
                     key=lambda i: spec_id(specs[i]))  # locks taken in one order: no deadlock
    if len(pending) == 1:
        before = computed_count()
        try:
            run = distill_run(specs[pending[0]], workspace)
            outcomes[pending[0]] = ("computed" if computed_count() > before else "found", run)
        except DistillationDiverged as diverged:
            outcomes[pending[0]] = ("diverged", diverged)
    elif pending:
        outcomes.update(_distill_together([specs[i] for i in pending], pending, workspace, device))
    return [outcomes[i] for i in range(len(specs))]


def _distill_together(specs: list[DistillSpec], indices: list[int], workspace: Workspace,
                      device) -> dict[int, tuple[str, object]]:
    """Compute ``specs`` as one batch of replicates inside their store jobs (see distill_runs)."""
    data = workspace.dataset(specs[0].dataset)
    loaded: dict = {}
    inputs = [_inputs(spec, data, workspace, device, loaded) for spec in specs]
    outcomes: dict[int, tuple[str, object]] = {}
    entered: list = []  # (index, manager, job, replica) of the jobs this call computes
    try:
        for index, spec, (guidance, resources) in zip(indices, specs, inputs, strict=True):
            manager = workspace.store.computing(spec, device=str(device),
                                                recompute=workspace.recompute)
            job = manager.__enter__()
            if job.run is not None:  # another process computed it meanwhile
                manager.__exit__(None, None, None)
                outcomes[index] = ("found", job.run)
                continue
            ctx = job.context
            entered.append((index, manager, job, Replica(
                spec, guidance, resources, ctx.save_checkpoint, ctx.load_checkpoint,
                workspace.snapshots, _snapshot_saver(spec, workspace, str(device), data.info, job))))
        run_replicas([replica for *_, replica in entered], data, device=device,
                     checkpoint_every=workspace.checkpoint_every, progress=workspace.progress)
        while entered:
            index, manager, job, replica = entered[0]
            if replica.error is not None:
                error = _keep_last_good(job, replica.error)
                outcomes[index] = ("diverged", error)
                entered.pop(0)
                manager.__exit__(type(error), error, None)  # logs it, releases the lock
                continue
            outcomes[index] = ("computed", _complete_distillation(job, replica.spec, data.info,
                                                                  replica.result))
            entered.pop(0)
            manager.__exit__(None, None, None)
    except BaseException as error:  # an interruption: every job still open logs it and unlocks
        for _, manager, _, _ in entered:
            manager.__exit__(type(error), error, error.__traceback__)
        raise
    return outcomes


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
