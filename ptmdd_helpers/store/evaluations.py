"""Evaluations through the run store: the training set of a subject (a distilled set, a random
real subset, the whole training set) and :func:`evaluation_run`, which trains an evaluation's
networks on it (see :mod:`.runs` for the specs and the random streams)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from ..distill import DistillSpec, real_subset_generator
from ..distill.methods import learns_lr
from ..evaluation.evaluate import ensemble_fallback_reason, evaluate_images
from ..evaluation.protocol import EvalProtocol
from ..evaluation.sets import evaluate_sets
from ..evaluation.training_sets import evaluation_seed_parts, random_real_subset, summarize
from ..networks.models import list_models
from ..networks.training import resolve_device
from ..specs import spec_id
from ..work import computed_count
from .repair import lacking_reason, recompute_fix, recoverable_spec, set_aside_if_broken
from .runfiles import Run, RunError
from .runs import EvaluationSpec, RealSubsetSpec, Subject, Workspace, check_call, distill_run, spec_from_dict


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
    existing = _stored(spec, workspace)
    if existing is not None:
        return existing
    device = resolve_device(workspace.device)
    protocol = training_protocol(spec)
    images, labels = training_set(spec.subject, workspace)  # before this run's lock
    with workspace.store.computing(spec, device=str(device),
                                   recompute=workspace.recompute) as job:
        if job.run is not None:
            return job.run
        return _evaluate_in_job(job, spec, workspace, images, labels, protocol, device)


def _stored(spec: EvaluationSpec, workspace: Workspace) -> Run | None:
    """The stored run of ``spec`` (a failing one set aside first with ``recompute``), if any."""
    if spec.arch not in list_models():
        raise ValueError(f"unknown model {spec.arch!r}; valid: {', '.join(list_models())}")
    if workspace.recompute:  # a stored evaluation failing verification: quarantined, computed again
        set_aside_if_broken(workspace.store, spec)
    return workspace.store.get(spec)


def _evaluate_in_job(job, spec: EvaluationSpec, workspace: Workspace, images: torch.Tensor,
                     labels: torch.Tensor, protocol: EvalProtocol, device) -> Run:
    """Train and test the networks of ``spec`` in its store job (keeping the rows finished
    before an interruption) and complete the run."""
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
    return _complete(job, spec, rows, protocol)


def _complete(job, spec: EvaluationSpec, rows: list[dict], protocol: EvalProtocol) -> Run:
    job.context.add_timing("evaluate_seconds", sum(row["seconds"] for row in rows))
    metrics = {"rows": rows, "summary": summarize(rows)[spec.arch]}
    if spec.protocol.learned_lr:
        metrics["lr"] = protocol.lr  # the learned lr the networks trained at
    return job.complete(metrics)


def together_key(spec: EvaluationSpec) -> tuple:
    """What evaluations trained as one ensemble share (:func:`evaluation_runs`): architecture,
    networks, protocol and the subject's dataset and size (its seed and what made it may differ)."""
    subject = spec.subject
    return (spec.arch, spec.n_nets, spec.protocol, subject.dataset, getattr(subject, "ipc", None))


def evaluation_runs(specs: Sequence[EvaluationSpec], workspace: Workspace,
                    ensemble: bool | None = None) -> list[tuple[str, Run]]:
    """The evaluations of ``specs`` (one :func:`together_key`), those the store lacks trained as
    one ensemble over all their sets (:func:`~ptmdd_helpers.evaluation.sets.evaluate_sets`), each
    stored under its own run id; per spec ``(status, run)``, status ``computed`` or ``found``.

    ``ensemble`` (default: on CUDA, as ``evaluate_images``) ``False`` evaluates them one by one. A
    spec whose run has networks finished before an interruption, that trains at a learned lr
    (MTT), or whose architecture cannot be vmapped, is evaluated alone in its job."""
    specs = list(specs)
    for spec in specs:
        check_call(spec, workspace, "evaluation_runs", EvaluationSpec)
    if len({together_key(spec) for spec in specs}) > 1:
        raise ValueError("evaluation_runs: the specs must share architecture, networks, protocol "
                         "and the subject's dataset and size (store.evaluations.together_key)")
    outcomes: dict[int, tuple[str, Run]] = {}
    for index, spec in enumerate(specs):
        stored = _stored(spec, workspace)
        if stored is not None:
            outcomes[index] = ("found", stored)
    pending = sorted((i for i in range(len(specs)) if i not in outcomes),
                     key=lambda i: spec_id(specs[i]))  # locks taken in one order: no deadlock
    device = resolve_device(workspace.device)
    together = ensemble if ensemble is not None else device.type == "cuda"
    if len(pending) < 2 or not together or specs[pending[0]].protocol.learned_lr or \
            ensemble_fallback_reason(specs[pending[0]].arch,
                                     workspace.dataset(specs[pending[0]].subject.dataset)):
        for index in pending:
            before = computed_count()
            run = evaluation_run(specs[index], workspace)
            outcomes[index] = ("computed" if computed_count() > before else "found", run)
    else:
        outcomes.update(_evaluate_together([specs[i] for i in pending], pending, workspace,
                                           device))
    return [outcomes[i] for i in range(len(specs))]


def _evaluate_together(specs: list[EvaluationSpec], indices: list[int], workspace: Workspace,
                       device) -> dict[int, tuple[str, Run]]:
    """Train the networks of ``specs`` as one ensemble inside their store jobs."""
    sets = [training_set(spec.subject, workspace) for spec in specs]  # before the locks
    data = workspace.dataset(specs[0].subject.dataset)
    outcomes: dict[int, tuple[str, Run]] = {}
    open_jobs: list = []  # (index, manager, job, spec, images, labels) computed together
    try:
        for index, spec, (images, labels) in zip(indices, specs, sets, strict=True):
            manager = workspace.store.computing(spec, device=str(device),
                                                recompute=workspace.recompute)
            job = manager.__enter__()
            if job.run is not None:
                manager.__exit__(None, None, None)
                outcomes[index] = ("found", job.run)
            elif job.context.load_checkpoint() is not None or images.shape != sets[0][0].shape \
                    or not torch.equal(labels, sets[0][1]):  # resumed, or a set of its own shape
                outcomes[index] = ("computed", _evaluate_in_job(
                    job, spec, workspace, images, labels, spec.protocol, device))
                manager.__exit__(None, None, None)
            else:
                open_jobs.append((index, manager, job, spec, images, labels))
        rows = evaluate_sets(
            [(images, labels, evaluation_seed_parts(spec.subject.dataset, subject_seed(spec.subject)))
             for _, _, _, spec, images, labels in open_jobs], data, specs[0].arch,
            specs[0].n_nets, specs[0].protocol, device, workspace.progress) if open_jobs else []
        while open_jobs:
            index, manager, job, spec, _, _ = open_jobs[0]
            outcomes[index] = ("computed", _complete(job, spec, rows.pop(0), spec.protocol))
            open_jobs.pop(0)
            manager.__exit__(None, None, None)
    except BaseException as error:  # an interruption: every job still open logs it and unlocks
        for _, manager, *_ in open_jobs:
            manager.__exit__(type(error), error, error.__traceback__)
        raise
    return outcomes
