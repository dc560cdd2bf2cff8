"""Every folder ptmdd reads or writes, resolved by one rule.

A root is, in this order:

1. the argument (``--store DIR``, ``RunStore(root)``, ``data_root=...``), relative to the working
   directory;
2. else the profile's key (``store``, ``pool_root``, ``data_root``, ``figures_dir``, ``runs_dir``),
   relative to the project root;
3. else the environment variable (``PTMDD_RUNS``, ``PTMDD_POOLS``, ``PTMDD_DATA``,
   ``PTMDD_FIGURES``, ``PTMDD_BATCH``), relative to the working directory;
4. else the default below, relative to the project root when the working directory is inside the
   project, and to the working directory otherwise.

=========  ==============  ===============  ====================
root       profile key     environment      default
=========  ==============  ===============  ====================
data       ``data_root``   ``PTMDD_DATA``   ``data``
store      ``store``       ``PTMDD_RUNS``   ``runs/store``
pools      ``pool_root``   ``PTMDD_POOLS``  ``runs/pools``
figures    ``figures_dir`` ``PTMDD_FIGURES`` ``figures/<profile>``
batch      ``runs_dir``    ``PTMDD_BATCH``  ``runs/<profile>``
=========  ==============  ===============  ====================

``batch`` holds a study's executed notebooks and submitit logs. The project root is
``$PTMDD_PROJECT``, else the checkout that holds this package (a folder with ``parameters/``),
else the working directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PathError(ValueError):
    """A root names something that cannot be used as a folder."""


@dataclass(frozen=True)
class Root:
    """How one root is found: its profile key, environment variable and default."""

    profile_key: str
    environment: str
    default: str
    option: str


ROOTS = {
    "data": Root("data_root", "PTMDD_DATA", "data", "--data-root"),
    "store": Root("store", "PTMDD_RUNS", "runs/store", "--store"),
    "pools": Root("pool_root", "PTMDD_POOLS", "runs/pools", "--pool-root"),
    "figures": Root("figures_dir", "PTMDD_FIGURES", "figures/{profile}", "figures_dir"),
    "batch": Root("runs_dir", "PTMDD_BATCH", "runs/{profile}", "runs_dir"),
}
PROFILE_KEYS = tuple(root.profile_key for root in ROOTS.values())


def project_root() -> Path:
    """The project folder: ``$PTMDD_PROJECT``, else the checkout holding this package, else cwd."""
    env = os.environ.get("PTMDD_PROJECT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parents[1]
    return here if (here / "parameters").is_dir() else Path.cwd()


def _default_base() -> Path:
    project, cwd = project_root(), Path.cwd().resolve()
    return project if cwd == project or project in cwd.parents else cwd


def resolve(
    name: str, argument: str | Path | None = None, profile: Mapping[str, Any] | None = None,
) -> Path:
    """The folder of root ``name`` (data, store, pools, figures, batch) by the module's rule."""
    root = ROOTS[name]
    profile = profile or {}
    for given, how in ((argument, f"{root.option} (the {name} root argument)"),
                       (profile.get(root.profile_key), f"the profile key {root.profile_key!r}")):
        if isinstance(given, (str, Path)) and not str(given).strip():  # "" would mean the default
            raise PathError(
                f"{how} is empty: it must name the {name} folder. Fix: give a folder, or leave it "
                f"out (null in a profile) for ${root.environment}, else the default "
                f"{root.default.format(profile='<profile>')}/")
    if argument is not None:
        path = Path(argument).expanduser()
    elif profile.get(root.profile_key) is not None:
        path = Path(str(profile[root.profile_key])).expanduser()
        path = path if path.is_absolute() else project_root() / path
    elif os.environ.get(root.environment):
        path = Path(os.environ[root.environment]).expanduser()
    else:
        default = root.default.format(profile=profile.get("profile", "default"))
        path = _default_base() / default
    return usable_folder(path, name)


def usable_folder(path: Path, name: str) -> Path:
    """``path`` if it is a folder or does not exist yet; :class:`PathError` naming the fix if not."""
    if path.exists() and not path.is_dir():
        root = ROOTS.get(name)
        how = (f"{root.option}, the profile key {root.profile_key!r} or ${root.environment}"
               if root else "the argument")
        raise PathError(
            f"the {name} root {path} is a file, not a folder; point {how} at a folder "
            "(it is created when missing)")
    return path
