"""Evaluations through the run store: the training set of a subject (a distilled set, a random
real subset, the whole training set) and :func:`evaluation_run`, which trains an evaluation's
networks on it (see :mod:`.runs` for the specs and the random streams)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..distill import DistillSpec, real_subset_generator
from ..distill.methods import learns_lr
from ..evaluation.evaluate import evaluate_images
from ..evaluation.protocol import EvalProtocol
from ..evaluation.training_sets import evaluation_seed_parts, random_real_subset, summarize
from ..networks.models import list_models
from ..networks.training import resolve_device
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
