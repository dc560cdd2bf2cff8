"""Executors: turn what grids lack into tasks and run them, locally or through submitit
(a task itself runs in :mod:`.workers`).

A :class:`Task` is one spec: a pool member to train (``member``), an untrained initialization to
write (``init``), a distillation or an evaluation. Each is idempotent through the store's and the
pools' file locks, so two studies on one store compute every task once. :func:`compute` runs the
pending tasks in dependency order with the ``local`` executor (N spawned worker processes that end
with their parent: a watchdog thread in each exits when the parent is gone, even after SIGKILL) or
``slurm`` (submitit). Each result says whether this process computed the task (``computed``),
another process finished it meanwhile (``found``), or it ``failed``, ``diverged`` or was
``skipped`` because a task it depends on did not finish.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..distill import DistillSpec, get_method
from ..networks.training import resolve_device
from ..pools.members import MemberSpec, member_complete
from ..pools.pretrain import initial_path
from ..specs import spec_id
from ..store.runs import Workspace
from .grid import Grid, merge_members, snapshot_sources, unique
from .packing import pack, replicate_batch_size
from .profiles import StudyError
from .roots import batch_dir, workspace
from .schema import EXECUTORS
from .workers import execute_group, execute_tasks, start_worker, workspace_config

KINDS = ("member", "init", "distill", "evaluation")
FINISHED = ("computed", "found")  # statuses after which dependants may run


@dataclass(frozen=True)
class Task:
    """One unit of work: ``member`` (train), ``init`` (epoch-0 checkpoint), ``distill``, ``evaluation``;
    ``after``: keys of further tasks it waits for (an evaluation of a snapshot: the longer
    distillation that stores it)."""

    kind: str
    spec: Any
    after: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        """A readable unique key (computed once: the scheduler asks for it at every turn)."""
        if self.kind in ("member", "init"):
            return member_key(self.kind, self.spec)
        return spec_id(self.spec)


def member_key(kind: str, member: MemberSpec) -> str:
    """The task key of a pool member: ``member:<its folder under the pool root>`` (``init:`` for
    its untrained initialization), e.g. ``member:Digits/ConvNet/seed0``, ``member:…/mtt/seed0``."""
    return f"{kind}:{member.key}"


@dataclass(frozen=True)
class Needs:
    """Everything a set of grids needs, deduplicated across them; ``snapshots`` maps each
    distillation that a longer one of the list stores on its way (a snapshot) to that one, and
    ``distillations`` lists only the others (those to run)."""

    members: list[MemberSpec]
    initial: list[MemberSpec]
    distillations: list[DistillSpec]
    evaluations: list[Any]
    snapshots: dict[DistillSpec, DistillSpec]


def needs_of(grids: Sequence[Grid], snapshots: Sequence[int] = ()) -> Needs:
    """The pool members, initializations, distillations and evaluations of ``grids`` together;
    distillations that a longer one stores as a snapshot (iteration counts ``snapshots``) are not
    run themselves (:attr:`Needs.snapshots`)."""
    distillations = unique(d for g in grids for d in g.distilled)
    sources = snapshot_sources(distillations, snapshots)
    return Needs(merge_members(m for g in grids for m in g.members),
                 merge_members(m for g in grids for m in g.initial),
                 [d for d in distillations if d not in sources],
                 unique(e for g in grids for e in g.evaluations), sources)


def pending_tasks(grids: Sequence[Grid], ws: Workspace) -> list[Task]:
    """What the store and pool root lack for ``grids``, in dependency order, without duplicates.
    A snapshot's evaluations wait for the longer distillation that stores it; a snapshot whose
    longer run is already stored without it is distilled on its own."""
    needs = needs_of(grids, ws.snapshots)
    tasks = [Task("member", m) for m in needs.members if not member_complete(m, ws.pool_root)]
    tasks += [Task("init", m) for m in needs.initial if not initial_path(m, ws.pool_root).is_file()]
    runs = [d for d in needs.distillations if not ws.store.exists(d)]
    after: dict[DistillSpec, tuple[str, ...]] = {}
    for snapshot, source in needs.snapshots.items():
        if ws.store.exists(snapshot):
            continue
        if source in runs:
            after[snapshot] = (Task("distill", source).key,)
        else:
            runs.append(snapshot)
    tasks += [Task("distill", d) for d in runs]
    tasks += [Task("evaluation", e, after.get(e.subject, ())) for e in needs.evaluations
              if not ws.store.exists(e)]
    return tasks


def dependencies(task: Task) -> list[str]:
    """Keys of the tasks that must finish before ``task``: an evaluation's distillation (and, for
    a snapshot, the longer run that stores it: ``task.after``); a distillation's guiding pool
    members (or their initializations) and the members its method reads (MTT's experts)."""
    spec = task.spec
    if task.kind == "evaluation":
        own = [Task("distill", spec.subject).key] if isinstance(spec.subject, DistillSpec) else []
        return own + list(task.after)
    if task.kind != "distill":
        return []
    keys = list(task.after)
    if spec.guidance is not None:
        g = spec.guidance
        kind = "init" if g.epoch == 0 else "member"
        keys += [member_key(kind, MemberSpec(g.source, arch, seed)) for arch in g.archs
                 for seed in range(g.n_models)]
    method = get_method(spec.method)
    keys += [member_key("member", member) for member, _ in
             (method.members(spec) if method.members else [])]
    return keys


Results = dict[str, tuple[str, str]]


def run_local(tasks: Sequence[Task], config: dict[str, Any], workers: int,
              log: Callable[[str], None], replicas: int = 1, sets: int = 1) -> Results:
    """Run ``tasks`` respecting dependencies in ``workers`` spawned processes (1: in-process);
    ready distillations of one shape go to one process as a batch of up to ``replicas``, ready
    evaluations of one shape as one ensemble of up to ``sets`` (:func:`~.packing.pack`)."""
    results: Results = {}
    keys = {t.key for t in tasks}
    deps = {t.key: [d for d in dependencies(t) if d in keys] for t in tasks}
    waiting = list(tasks)

    def ready(task: Task) -> bool | None:
        """True: can start; None: a dependency did not finish; False: wait."""
        states = [results.get(d) for d in deps[task.key]]
        if any(s is not None and s[0] not in FINISHED for s in states):
            return None
        return all(s is not None for s in states)

    def settle(key: str, status: str, message: str) -> None:
        results[key] = (status, message)
        log(f"[{len(results)}/{len(tasks)}] {status}: {key}" +
            (f" ({message.splitlines()[0]})" if message else ""))

    def take(task: Task) -> list[Task]:
        """``task`` with the ready tasks packed with it (:func:`~.packing.pack`), out of ``waiting``."""
        group = pack(task, [t for t in waiting if t is not task and ready(t)], replicas, sets)
        for member in group:
            waiting.remove(member)
        return group

    if workers <= 1:
        while waiting:
            task = waiting[0]
            if ready(task) is None:
                waiting.remove(task)
                settle(task.key, "skipped", "a task it depends on did not finish")
                continue
            for result in execute_group(take(task), config):
                settle(*result)
        return results

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    # the cores shared out: two processes of two threads on two cores slow each other 3-10x
    # (spin-waiting); on a GPU box's 16 cores, 4 workers get 4 threads each
    config = dict(config, threads=config.get("threads") or max(1, (os.cpu_count() or 1) // workers))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=start_worker,
                             initargs=(int(config["threads"]), os.getpid())) as pool:
        running: dict[Any, list[Task]] = {}
        while waiting or running:
            for task in list(waiting):
                if task not in waiting:  # packed with an earlier one
                    continue
                state = ready(task)
                if state is None:
                    waiting.remove(task)
                    settle(task.key, "skipped", "a task it depends on did not finish")
                elif state:
                    group = take(task)
                    running[pool.submit(execute_group, group, config)] = group
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                group = running.pop(future)
                try:
                    for result in future.result():
                        settle(*result)
                except Exception as error:  # noqa: BLE001 - a worker died
                    for task in group:
                        settle(task.key, "failed", f"{type(error).__name__}: {error}")
    return results


def _stages(tasks: Sequence[Task]) -> list[list[Task]]:
    order = (("member", "init"), ("distill",), ("evaluation",))
    return [[t for t in tasks if t.kind in kinds] for kinds in order]


def run_slurm(tasks: Sequence[Task], config: dict[str, Any], workers: int,
              slurm: Mapping[str, Any], folder: Path, log: Callable[[str], None]) -> Results:
    """Submit each stage's tasks through submitit in at most ``workers`` jobs; wait for them."""
    import submitit

    slurm = dict(slurm or {})
    cluster = slurm.pop("cluster", None)
    max_jobs = int(slurm.pop("max_jobs", 0) or workers or 1)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    if slurm:
        executor.update_parameters(**slurm)
    if not config.get("threads"):
        # jobs sharing this machine (local, debug) get one thread each: oversubscribed intra-op
        # threads spin and slow everything down; on a cluster a job uses its cpus_per_task
        threads = slurm.get("cpus_per_task") or (1 if executor.cluster in ("local", "debug") else 0)
        config = dict(config, threads=threads or None)
    results: Results = {}
    for stage in _stages(tasks):
        runnable = []
        for task in stage:
            failed = [d for d in dependencies(task) if d in results and results[d][0] not in FINISHED]
            if failed:
                results[task.key] = ("skipped", f"{failed[0]} did not finish")
            else:
                runnable.append(task)
        if not runnable:
            continue
        n_jobs = min(max_jobs, len(runnable))
        chunks = [runnable[i::n_jobs] for i in range(n_jobs)]
        jobs = [executor.submit(execute_tasks, chunk, config) for chunk in chunks]
        log(f"submitted {len(runnable)} {stage[0].kind} tasks as {len(jobs)} submitit jobs "
            f"({executor.cluster}) under {folder}")
        for job, chunk in zip(jobs, chunks, strict=True):
            try:
                for key, status, message in job.result():
                    results[key] = (status, message)
            except Exception as error:  # noqa: BLE001 - a job died; its tasks failed
                for task in chunk:
                    results.setdefault(task.key, ("failed", f"job {job.job_id}: {error}"))
    for key, (status, message) in results.items():
        if status not in FINISHED:
            log(f"{status}: {key} ({message.splitlines()[0] if message else ''})")
    return results


def compute(
    grids: Grid | Sequence[Grid], ws: Workspace | None = None, *, executor: str = "local",
    workers: int = 1,
    slurm: Mapping[str, Any] | None = None, folder: str | Path | None = None,
    verbose: bool = True, replicas: int | str | None = "auto",
) -> Results:
    """Compute everything the grids need that is not stored; return {task key: (status, message)}.

    ``replicas``: distillations of one shape computed together as a batch of replicates, at most
    (:func:`replicate_batch_size`; the local executor only).

    Raises :class:`StudyError` if a task failed (other than a diverged distillation, which is
    kept as a result: its evaluations are skipped and the frame says so).
    """
    grids = [grids] if isinstance(grids, Grid) else list(grids)
    if executor not in EXECUTORS:
        raise StudyError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if not grids:
        return {}
    ws = ws or workspace(grids[0].params)
    tasks = pending_tasks(grids, ws)
    if not tasks:
        return {}

    def log(message: str) -> None:
        if verbose:
            print(message, flush=True)

    counts = {k: sum(t.kind == k for t in tasks) for k in KINDS}
    log(f"computing {len(tasks)} tasks ({', '.join(f'{v} {k}' for k, v in counts.items() if v)}) "
        f"with the {executor} executor, {workers} worker(s)")
    config = workspace_config(ws)
    if executor == "local":
        size = replicate_batch_size(replicas, ws.device)
        # evaluations of many sets as one ensemble where the ensemble is the default (CUDA)
        sets = size if resolve_device(ws.device).type == "cuda" else 1
        if size > 1:
            log(f"distillations of one shape run as batches of up to {size} replicates"
                + (f", evaluations of one shape as ensembles over up to {sets} sets"
                   if sets > 1 else ""))
        results = run_local(tasks, config, int(workers), log, size, sets)
    else:
        folder = folder or batch_dir(grids[0].params) / "submitit"
        results = run_slurm(tasks, config, int(workers), slurm or {}, Path(folder), log)
    failed = {k: v for k, v in results.items() if v[0] == "failed"}
    if failed:
        details = "\n".join(f"- {k}: {m}" for k, (_, m) in failed.items())
        raise StudyError(f"{len(failed)} of {len(tasks)} tasks failed:\n{details}")
    return results


def tally(results: Results) -> dict[str, int]:
    """How many results have each status (computed, found, diverged, skipped, failed)."""
    counts: dict[str, int] = {}
    for status, _ in results.values():
        counts[status] = counts.get(status, 0) + 1
    return counts
