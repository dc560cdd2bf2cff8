"""What a worker process runs: one task, a packed group of tasks, or a submitit job's list.

A worker is set up from a plain, picklable config (:func:`workspace_config`: the workspace's
settings, its threads and the modules of the plug-in methods) and never raises: each task ends as
(key, status, message), ``computed`` when this process computed it, ``found`` when another
process finished it meanwhile, ``failed`` or ``diverged``. :func:`start_worker` is the local
executor's initializer: its threads, and a watchdog that ends the worker with its parent.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..distill.methods import import_method_modules, method_modules
from ..pools.pretrain import initial_path, write_initial_checkpoint
from ..store.runs import Workspace
from ..work import computed_count
from .profiles import StudyError

if TYPE_CHECKING:
    from .tasks import Task


def workspace_config(ws: Workspace, threads: int | None = None) -> dict[str, Any]:
    """What a worker process needs to rebuild ``ws`` (plain values, picklable), its threads, and
    the modules of the plug-in methods registered here (a worker imports them)."""
    return {**ws.settings(), "progress": False, "threads": threads,
            "method_modules": method_modules()}


def _worker_workspace(config: Mapping[str, Any]) -> Workspace:
    """This process set up as the config says (threads, plug-in methods); its workspace."""
    import torch

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    import_method_modules(config.get("method_modules", ()))  # plug-in methods, as registered
    return Workspace.from_settings(config)


def execute_task(task: Task, config: Mapping[str, Any]) -> tuple[str, str, str]:
    """Run one task in this process; return (key, status, message); never raises."""
    try:
        from ..pools.pretrain import train_member
        from ..store.evaluations import evaluation_run
        from ..store.runs import distill_run

        ws = _worker_workspace(config)
        before = computed_count()
        if task.kind == "member":
            train_member(task.spec, root=ws.pool_root, data_root=ws.data_root, device=ws.device,
                         progress=False)
        elif task.kind == "init":
            if not initial_path(task.spec, ws.pool_root).is_file():
                write_initial_checkpoint(task.spec, ws.pool_root)
                return task.key, "computed", ""
        elif task.kind == "distill":
            distill_run(task.spec, ws)
        elif task.kind == "evaluation":
            evaluation_run(task.spec, ws)
        else:
            raise StudyError(f"unknown task kind {task.kind!r}")
        return task.key, "computed" if computed_count() > before else "found", ""
    except Exception as error:  # noqa: BLE001 - reported to the caller, which decides
        return task.key, *_failure(error)


def _failure(error: Exception) -> tuple[str, str]:
    """The status and message of a task that raised ``error``."""
    status = "diverged" if type(error).__name__ == "DistillationDiverged" else "failed"
    message = f"{type(error).__name__}: {error}"
    if status == "failed":
        message += "\n" + traceback.format_exc(limit=6)
    return status, message


def execute_group(group: Sequence[Task], config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Run a task, or tasks packed together (:func:`~.packing.pack`: distillations as one batch of
    replicates, evaluations as one ensemble), in this process; one (key, status, message) per
    task; never raises."""
    if len(group) == 1:
        return [execute_task(group[0], config)]
    try:
        from ..store.evaluations import evaluation_runs
        from ..store.runs import distill_runs

        ws = _worker_workspace(config)
        specs = [task.spec for task in group]
        outcomes = (distill_runs(specs, ws) if group[0].kind == "distill"
                    else evaluation_runs(specs, ws))
        return [(task.key, status, "" if status != "diverged" else
                 f"{type(outcome).__name__}: {outcome}")
                for task, (status, outcome) in zip(group, outcomes, strict=True)]
    except Exception as error:  # noqa: BLE001 - every task of the batch failed
        status, message = _failure(error)
        return [(task.key, status, message) for task in group]


def execute_tasks(task_list: Sequence[Task], config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Run tasks one after another in this process (a submitit job's body)."""
    from ..malloc import tune_malloc

    tune_malloc()
    return [execute_task(task, config) for task in task_list]


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:  # the parent died (we were re-parented): end with it
            os._exit(1)
        time.sleep(1.0)


def start_worker(threads: int, parent: int) -> None:
    """Worker initializer: ``threads`` intra-op threads, and a watchdog that ends with the parent."""
    import torch

    from ..malloc import tune_malloc

    tune_malloc()
    torch.set_num_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="ptmdd-parent-watchdog").start()
