"""The batch: a whole profile's grids computed together, papermill on each notebook, the index.

Also the dry run (what a profile implies and how much of it is stored) and :func:`run`, the one
call a notebook makes: compute what its grid lacks and return its frame.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import paths
from ..pools.members import member_complete, read_member_log
from ..pools.pretrain import initial_path
from ..store.runs import Workspace
from .frames import result_frame
from .grid import Grid
from .grids import build_grid
from .profiles import NOTEBOOKS, Overrides, load_profile, override_pairs, profile_path, select_notebooks
from .roots import batch_dir, figures_dir, notebook_path, workspace
from .tasks import Results, compute, needs_of, tally

if TYPE_CHECKING:
    import pandas as pd


def _compute(grids: Sequence[Grid], ws: Workspace, params: Mapping[str, Any],
             verbose: bool) -> Results:
    return compute(grids, ws, executor=params["executor"],
                   workers=int(params["workers"]), slurm=params.get("slurm"),
                   folder=batch_dir(params) / "submitit", verbose=verbose,
                   replicas=(params.get("distill") or {}).get("replicas"))


def run(grid: Grid, executor: str | None = None, workers: int | None = None, *,
        ws: Workspace | None = None, verbose: bool = True) -> pd.DataFrame:
    """Compute what ``grid`` lacks and return its tidy frame (:func:`.frames.result_frame`)."""
    params = dict(grid.params)
    params.update({k: v for k, v in (("executor", executor), ("workers", workers)) if v})
    ws = ws or workspace(params)
    _compute([grid], ws, params, verbose)
    table = result_frame(grid, ws)
    if table.attrs["missing"] and verbose:
        warnings.warn(f"{len(table.attrs['missing'])} evaluations of {grid.notebook} have no "
                      "stored run (a distillation diverged?)", RuntimeWarning, stacklevel=2)
    return table


# --------------------------------------------------------------------------- dry run


@dataclass
class GridSize:
    """How much a grid implies and how much of it is already there (``done`` of ``needed``)."""

    notebook: str
    members: tuple[int, int]  # PTM pool members
    initial: tuple[int, int]
    distillations: tuple[int, int]
    evaluations: tuple[int, int]
    networks: tuple[int, int]
    experts: tuple[int, int] = (0, 0)  # MTT's expert trajectories (members of a named recipe)


def grid_size(grids: Sequence[Grid], ws: Workspace, name: str) -> GridSize:
    """The size of ``grids`` taken together (duplicates across them counted once)."""
    needs = needs_of(grids, ws.snapshots)
    stored = [e for e in needs.evaluations if ws.store.exists(e)]

    def trained(members: list) -> tuple[int, int]:
        return sum(member_complete(m, ws.pool_root) for m in members), len(members)

    return GridSize(
        name,
        trained([m for m in needs.members if m.recipe_name == "paper"]),
        (sum(initial_path(m, ws.pool_root).is_file() for m in needs.initial), len(needs.initial)),
        (sum(ws.store.exists(d) for d in needs.distillations), len(needs.distillations)),
        (len(stored), len(needs.evaluations)),
        (sum(e.n_nets for e in stored), sum(e.n_nets for e in needs.evaluations)),
        trained([m for m in needs.members if m.recipe_name != "paper"]),
    )


def dry_run(profile: str | Path, overrides: Overrides = None, only: Sequence[str] | None = None,
            file: TextIO | None = None, estimate: bool = False) -> list[GridSize]:
    """Print, per notebook and in total, what ``profile`` implies and how much is stored; with
    ``estimate``, also the estimated hours of what is missing, timed on this device
    (:mod:`.estimate`)."""
    file = file or sys.stdout
    params = load_profile(profile, overrides)
    notebooks = select_notebooks(only)
    grids = [build_grid(nb, params[nb]) for nb in notebooks]
    ws = workspace(params[notebooks[0]])
    rows = [grid_size([g], ws, g.notebook) for g in grids]
    rows.append(grid_size(grids, ws, "total (deduplicated)"))
    print(f"profile {params[notebooks[0]]['profile']}: store {ws.store.root}, pools "
          f"{ws.pool_root}", file=file)
    print(f"{'notebook':<24}{'pool members':>14}{'untrained':>11}{'MTT experts':>13}"
          f"{'distillations':>15}{'evaluation runs':>17}{'networks':>12}", file=file)
    for size in rows:
        cells = [f"{done}/{needed}" for done, needed in (
            size.members, size.initial, size.experts, size.distillations, size.evaluations,
            size.networks)]
        print(f"{size.notebook:<24}{cells[0]:>14}{cells[1]:>11}{cells[2]:>13}{cells[3]:>15}"
              f"{cells[4]:>17}{cells[5]:>12}", file=file)
    print("(done/needed: PTM pool members trained to the recipe's epochs, untrained initial "
          "checkpoints, MTT's expert trajectories trained to the experts' epochs, distillations "
          "and evaluations in the store, networks they trained)", file=file)
    if estimate:
        from .estimate import Timer, print_estimates
        from .estimate import estimate as estimate_of
        from .packing import replicate_batch_size

        replicas = replicate_batch_size((params[notebooks[0]].get("distill") or {}).get("replicas"),
                                        ws.device)
        with Timer(ws, replicas) as timer:
            costs = [estimate_of([g], ws, g.notebook, timer) for g in grids]
            costs.append(estimate_of(grids, ws, "total (deduplicated)", timer))
        print_estimates(costs, file, str(timer.device), replicas)
    return rows


# --------------------------------------------------------------------------- the batch


def machine_description() -> str:
    """CPU count, platform and accelerator, in one line."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()}: {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPU cores, {gpu}; torch {torch.__version__}")


def stored_compute_seconds(grids: Sequence[Grid], ws: Workspace) -> float:
    """Seconds the grids' stored runs and pool members took to compute (whenever they ran)."""
    needs = needs_of(grids, ws.snapshots)
    total = 0.0
    for member in needs.members:
        log = read_member_log(member, ws.pool_root)
        if log is not None:
            total += log.seconds
    for spec in [*needs.distillations, *needs.evaluations]:
        found = ws.store.get(spec)
        if found is not None:
            total += float(found.timings.get("compute_seconds", 0.0))
    return total


def describe_counts(results: Results, needed: int) -> str:
    """``"3 computed here, 2 by another process meanwhile, 40 already stored"`` (and failures)."""
    counts = tally(results)
    parts = [f"{counts.get('computed', 0)} computed here",
             f"{counts.get('found', 0)} by another process meanwhile",
             f"{needed - len(results)} already stored"]
    parts += [f"{counts[s]} {s}" for s in ("diverged", "skipped", "failed") if counts.get(s)]
    return ", ".join(parts)


def execute_notebook(source: Path, target: Path, parameters: Mapping[str, Any]) -> Path:
    """Execute ``source`` with papermill (``parameters`` injected) into ``target``."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from ..notebook_kernel import papermill_kernel_options
    from .profiles import StudyError

    try:
        with tempfile.TemporaryDirectory(prefix="ptmdd-kernel-") as sockets:
            papermill.execute_notebook(
                str(source), str(target), parameters=dict(parameters),
                cwd=str(paths.project_root()), kernel_name="python3", progress_bar=False,
                log_output=False,
                **papermill_kernel_options(sockets),  # IPC: no "running over TCP" warning
            )
    except PapermillExecutionError as error:
        raise StudyError(
            f"{source.stem} failed at execution count {error.exec_count}: {error.ename}: "
            f"{error.evalue}; the executed notebook with the traceback is {target}"
        ) from None
    return target


def _execute_notebooks(jobs: list[tuple[Path, Path, dict]], parallel: int) -> None:
    """Run papermill on each job, ``parallel`` at a time: threads, since each notebook runs in a
    kernel process of its own (a worker process would import torch only to wait on it)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(parallel, thread_name_prefix="ptmdd-papermill") as pool:
        list(pool.map(execute_notebook, *zip(*jobs, strict=True)))


def run_study(
    profile: str | Path, *, only: Sequence[str] | str | None = None, executor: str | None = None,
    workers: int | None = None, overrides: Overrides = None, notebooks: bool = True,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run a profile: compute every selected grid, execute the notebooks, write the index.

    Returns {"seconds", "compute_seconds", "notebooks" (executed paths), "index", "results",
    "counts" (what this process computed, what another did meanwhile, what was stored)}.
    """
    from .. import report

    start = time.perf_counter()
    extra = override_pairs(overrides)
    extra += [(k, v) for k, v in (("executor", executor), ("workers", workers)) if v]
    params = load_profile(profile, extra)
    chosen = select_notebooks(only)
    grids = [build_grid(nb, params[nb]) for nb in chosen]
    first = params[chosen[0]]
    ws = workspace(first)
    needs = needs_of(grids, ws.snapshots)
    needed = sum(map(len, (needs.members, needs.initial, needs.distillations, needs.evaluations)))
    results = _compute(grids, ws, first, verbose)
    counts = describe_counts(results, needed)
    executed = []
    if notebooks:
        out_dir = batch_dir(first) / "notebooks"
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(notebook_path(nb), out_dir / f"{nb}.ipynb",
                 {"profile": params[nb]["profile"], "params": params[nb]}) for nb in chosen]
        parallel = max(1, min(int(first["workers"]), len(jobs)))
        if verbose:
            print(f"papermill: {len(jobs)} notebooks, {parallel} at a time, into {out_dir} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        _execute_notebooks(jobs, parallel)
        executed = [job[1] for job in jobs]
    seconds = time.perf_counter() - start
    compute_seconds = stored_compute_seconds(grids, ws)
    index = None
    if notebooks:
        figures = figures_dir(first)
        figures.mkdir(parents=True, exist_ok=True)
        batch = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine_description(),
                 "notebooks": ", ".join(chosen), "executor": first["executor"],
                 "workers": int(first["workers"]), "tasks computed": tally(results).get("computed", 0),
                 "counts": counts, "wall seconds": round(seconds, 1)}
        history = report.record_batch(figures, batch)
        meta = {
            "profile": f"{first['profile']} ({profile_path(profile).name})",
            "date": batch["date"],
            "machine": batch["machine"],
            "notebooks in this batch": batch["notebooks"],
            "wall time of this batch": f"{seconds:.0f} s (tasks: {counts})",
            "compute time of the runs shown": f"{compute_seconds:.0f} s (pool training + "
                                              "distillations + evaluations, as recorded when "
                                              "each was computed)",
        }
        index = report.write_index(figures, first["profile"], NOTEBOOKS, meta, history)
    return {"seconds": seconds, "notebooks": executed, "index": index, "results": results,
            "counts": counts, "compute_seconds": compute_seconds}
