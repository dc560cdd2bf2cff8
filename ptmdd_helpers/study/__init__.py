"""The study: profiles, one grid of runs per research question, executors, and the papermill batch.

The pipeline of a notebook, one module each:

- :mod:`.profiles` reads ``parameters/<profile>.yaml``, merges ``shared`` into each notebook,
  applies ``--set`` overrides and checks the result against :mod:`.schema`;
- :mod:`.grids` turns a notebook's parameters (read through :mod:`.values`) into a
  :class:`~.grid.Grid`: labelled evaluations and the pool checkpoints they need;
- :mod:`.tasks` computes what the store lacks (pools, then distillations, then evaluations) with
  the ``local`` or ``slurm`` executor;
- :mod:`.frames` reads a grid's results back as tidy frames;
- :mod:`.batch` runs a whole profile (all grids, then papermill on each notebook, then the index),
  the dry run, and :func:`run`, the notebooks' one call.

Every folder (store, pools, data, figures, executed notebooks) is resolved by
:mod:`ptmdd_helpers.paths`. A notebook does::

    params = study.notebook_parameters("03_epoch", "smoke")
    grid = study.build_grid("03_epoch", params)
    frame = study.run(grid)
"""

from .batch import (
    GridSize,
    dry_run,
    execute_notebook,
    grid_size,
    machine_description,
    run,
    run_study,
    stored_compute_seconds,
)
from .frames import distillation_frame, pool_diversity_frame, pool_frame, result_frame, synthetic_sets
from .grid import Grid, GridItem, PoolNeed, merge_members
from .grids import build_grid
from .profiles import (
    NOTEBOOKS,
    StudyError,
    deep_merge,
    load_profile,
    notebook_parameters,
    parse_override,
    profile_path,
    select_notebooks,
)
from .roots import batch_dir, figures_dir, notebook_path, workspace
from .schema import EXECUTORS
from .tasks import Task, compute, pending_tasks
from .values import architecture_pools
from .workers import execute_task

__all__ = [
    "EXECUTORS", "NOTEBOOKS", "Grid", "GridItem", "GridSize", "PoolNeed", "StudyError", "Task",
    "architecture_pools", "batch_dir", "build_grid", "compute", "deep_merge", "distillation_frame",
    "dry_run", "execute_notebook", "execute_task", "figures_dir", "grid_size", "load_profile",
    "machine_description", "merge_members", "notebook_parameters", "notebook_path",
    "parse_override", "pending_tasks", "pool_diversity_frame", "pool_frame", "profile_path",
    "result_frame", "run",
    "run_study", "select_notebooks", "stored_compute_seconds", "synthetic_sets", "workspace",
]
