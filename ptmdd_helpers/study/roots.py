"""A study's folders and workspace, from a notebook's parameters by :mod:`ptmdd_helpers.paths`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import paths
from ..store.runs import Workspace


def workspace(params: Mapping[str, Any]) -> Workspace:
    """The :class:`Workspace` (store, data, pools, device) that ``params`` name (:mod:`..paths`)."""
    return Workspace.from_settings({
        "store": paths.resolve("store", profile=params),
        "data_root": paths.resolve("data", profile=params),
        "pool_root": paths.resolve("pools", profile=params),
        "device": str(params["device"]), "progress": False,
        "compile": params.get("compile"),
        "snapshots": (params.get("distill") or {}).get("snapshots")})


def figures_dir(params: Mapping[str, Any]) -> Path:
    """Where the notebook writes figures and tables (``figures/<profile>`` by default)."""
    return paths.resolve("figures", profile=params)


def batch_dir(params: Mapping[str, Any]) -> Path:
    """Where executed notebooks and submitit logs go (``runs/<profile>`` by default)."""
    return paths.resolve("batch", profile=params)


def notebook_path(notebook: str) -> Path:
    """The source notebook ``notebooks/<notebook>.ipynb``."""
    return paths.project_root() / "notebooks" / f"{notebook}.ipynb"
