"""Export a stored distillation in the layout other evaluators load (``ptmdd export``).

``<out>/<run_id>.pt`` holds, saved with ``torch.save`` and loadable with
``torch.load(path, weights_only=True)``::

    {"images": float32 (N, C, H, W), normalized as the dataset's training images,
     "labels": int64 (N,), "mean": [...], "std": [...], "classes": [...],
     "dataset": name, "ipc": k, "run_id": id}

and, for an MTT run, ``"learned_lr"``: the learning rate MTT learned, which its evaluation trains at.

``<out>/<run_id>.png`` is a grid of the denormalized images clamped to [0, 1], one row per class
(one row in all when the IPC is 1). Both are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from ..atomic import atomic_torch_save
from ..data.datasets import get_info
from .runfiles import Run, write_image_grid

FORMATS = ("pt", "png")


def export_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Normalize ``"pt"``, ``"png"``, ``"both"`` or a sequence of them to a tuple of formats."""
    names = [formats] if isinstance(formats, str) else list(formats)
    chosen: list[str] = []
    for name in names:
        for part in FORMATS if name == "both" else (name,):
            if part not in FORMATS:
                raise ValueError(f"unknown export format {part!r}; valid: pt, png, both")
            if part not in chosen:
                chosen.append(part)
    if not chosen:
        raise ValueError("no export format given; valid: pt, png, both")
    return tuple(chosen)


def exported_set(run: Run) -> dict[str, object]:
    """The exported dictionary of a distillation run (see the module docstring)."""
    if run.kind != "distill":
        raise ValueError(f"{run.id} is a {run.kind} run, not a distillation: `ptmdd export` "
                         "exports the synthetic set of a distillation run (see `ptmdd runs list "
                         "--kind distill`)")
    dataset, ipc = str(run.spec["dataset"]), int(run.spec["ipc"])
    info = get_info(dataset)
    tensors = run.tensors()
    images = tensors["images"].detach().cpu().to(torch.float32).contiguous()
    labels = tensors["labels"].detach().cpu().to(torch.int64).contiguous()
    if images.dim() != 4 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{run.id}: stored images {tuple(images.shape)} and labels "
                         f"{tuple(labels.shape)} do not form a set of (N, C, H, W) and (N,)")
    exported = {"images": images, "labels": labels, "mean": [float(m) for m in info.mean],
                "std": [float(s) for s in info.std], "classes": list(info.class_names),
                "dataset": dataset, "ipc": ipc, "run_id": run.id}
    if "learned_lr" in tensors:
        exported["learned_lr"] = float(tensors["learned_lr"])
    return exported


def save_grid(exported: dict, path: str | Path) -> None:
    """Save the denormalized images of ``exported`` as a PNG grid, one row per class."""
    images, labels = exported["images"], exported["labels"]
    order = torch.sort(labels, stable=True).indices  # class by class, in stored order within one
    ipc = int(exported["ipc"])
    nrow = ipc if ipc > 1 else len(exported["classes"])
    write_image_grid(images[order], exported["mean"], exported["std"], nrow, Path(path))


def export_run(run: Run, out_dir: str | Path, formats: str | Iterable[str] = FORMATS) -> list[Path]:
    """Write ``<out_dir>/<run_id>.pt`` and/or ``.png`` of a distillation run; return the paths."""
    chosen = export_formats(formats)
    exported = exported_set(run)
    out_dir = usable_out_dir(out_dir)
    written = []
    try:
        if "pt" in chosen:
            atomic_torch_save(exported, out_dir / f"{run.id}.pt")
            written.append(out_dir / f"{run.id}.pt")
        if "png" in chosen:
            save_grid(exported, out_dir / f"{run.id}.png")
            written.append(out_dir / f"{run.id}.png")
    except OSError as error:
        raise _out_error(out_dir, error) from None
    return written


def _out_error(out_dir: Path, error: OSError) -> ValueError:
    """The one-paragraph error of an export folder that cannot be created or written."""
    reason = error.strerror or type(error).__name__
    return ValueError(f"cannot write the export to --out {out_dir}: {reason} ({error.filename or out_dir})."
                      f" Fix: give --out a folder you can write to (it is created when missing; "
                      f"its parent must be a folder)")


def usable_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a folder, created when missing; ``ValueError`` naming --out if it is a file
    or cannot be created or written (checked before anything is exported)."""
    if not isinstance(out_dir, (str, Path)) or str(out_dir) == "":
        raise ValueError(f"--out (export_run out_dir) must name a folder, got {out_dir!r}")
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder: the export writes "
                         f"<run id>.pt and <run id>.png into a folder. Fix: give --out a folder "
                         f"(it is created when missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _out_error(out_dir, error) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise _out_error(out_dir, PermissionError(13, "permission denied", str(out_dir)))
    return out_dir


__all__ = ["FORMATS", "export_formats", "export_run", "exported_set", "save_grid",
           "usable_out_dir"]
