"""Stored distillations that cannot be used as they are, and what ``recompute`` does about them.

A run folder that fails verification (:func:`~.runfiles.examine`), or a legacy distillation whose
``tensors.pt`` lacks a value its evaluation needs (an MTT set stored before its learned learning
rate was kept), is not evaluated. With ``recompute`` (``--recompute``) :func:`set_aside_if_broken`
moves it to ``<store>/.quarantine/`` so that it is computed again; :func:`recoverable_spec` reads
the spec of a failing folder to recompute it by; :func:`lacking_reason` says what a set lacks.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from filelock import FileLock, Timeout

from ..atomic import atomic_write_text
from ..specs import spec_data, spec_id
from .runfiles import (
    FILES_KEY,
    METRICS_FILE,
    QUARANTINE_DIR,
    SPEC_FILE,
    RunCheck,
    RunError,
    _dump_json,
    _load_tensors,
    _read_json,
    _recompute_fix,
    _run_files,
    examine,
)

LEARNED_LR = "learned_lr"  # the tensor of the lr an MTT distillation learned; its evaluation trains at it


def lacking_reason(spec: object, tensors: object) -> str | None:
    """Why a distillation's stored ``tensors`` cannot be evaluated (``None``: they can): its
    method's evaluation trains at the learned lr, and ``tensors`` has no ``learned_lr``."""
    from ..distill.methods import learns_lr

    try:
        data = spec_data(spec)
    except (TypeError, ValueError):
        return None
    learns = data.get("__kind__") == "DistillSpec" and learns_lr(data.get("method"))
    if learns and isinstance(tensors, dict) and LEARNED_LR not in tensors:
        return (f"it is a legacy {data['method']} distillation whose tensors.pt has no "
                f"{LEARNED_LR!r}, the learning rate the distillation learned and its evaluation "
                f"trains at (it was stored before that was kept)")
    return None


def recompute_fix(run_id: str, store_root: Path) -> str:
    """How to recompute a stored distillation that cannot be used (the ``ptmdd`` command)."""
    return (f"recompute it: `ptmdd evaluate {run_id} --recompute --store {store_root}` (or "
            f"recompute=True in Python) moves its folder to {store_root / QUARANTINE_DIR}/ and "
            f"distills it again")


def unserved_note(check) -> str:
    """What :meth:`RunStore.get` says of a run it does not serve: the problems and, where the fix is
    to recompute it, what ``--recompute`` does (true whether or not the flag was given)."""
    if check.fix != _recompute_fix(check.path):
        return check.message()
    return (f"{'; '.join(check.problems)}; with --recompute (recompute=True in Python) its folder is "
            f"moved to {check.path.parent / QUARANTINE_DIR}/ and the run computed again")


def recoverable_spec(store, id_or_path: str | Path) -> dict:
    """The spec data of a stored run that fails verification, read from its ``spec.json`` when that
    hashes to the folder's name; :class:`RunError` without it (it cannot be recomputed from it)."""
    path = store._resolve(id_or_path)
    try:
        raw = _read_json(path / SPEC_FILE)
        if spec_id(raw) == path.name:
            return raw
        problem = f"{path / SPEC_FILE} hashes to {spec_id(raw)}, not {path.name}"
    except (RunError, TypeError, ValueError, KeyError) as error:
        problem = str(error)
    raise RunError(
        f"cannot recompute {path.name}: it fails verification and its spec cannot be read back "
        f"({problem}), so it is not known what to compute. Fix: move {path} out of the store and "
        f"run the distillation again with `ptmdd distill` and the options that made it")


def set_aside_if_broken(store, spec: object) -> Path | None:
    """Move the stored run of ``spec`` to the quarantine if it fails verification (checksums too)
    or lacks what its evaluation needs (:func:`lacking_reason`); return where it went, or ``None``."""
    path = store.path(spec)

    def problem() -> str | None:
        if not (path / METRICS_FILE).is_file():
            return None
        check = examine(path, checksums=True)[0]
        if check.status == "failed":
            return f"fails verification ({'; '.join(check.problems)})"
        if check.servable and (path / "tensors.pt").is_file():
            try:
                return lacking_reason(spec_data(spec), _load_tensors(path / "tensors.pt"))
            except RunError as error:
                return f"cannot be read ({error})"
        return None

    if problem() is None:
        return None
    with FileLock(str(store.root / f"{path.name}.lock")):
        reason = problem()  # again under the lock: another process may have recomputed it
        if reason is None:
            return None
        moved = store._quarantine(path)
    warnings.warn(f"the stored run {path.name} {reason}; moved it to {moved} and computing it again "
                  "(--recompute)", RuntimeWarning, stacklevel=2)
    return moved


def seal_legacy(path: Path, spec: object) -> RunCheck:
    """Write the checksums of the current files of the legacy run at ``path`` (whose spec is
    ``spec``) into its ``metrics.json``, under the run's lock; ``RunError`` if a file does not
    load, the set lacks what its evaluation needs, or the folder is locked or read-only."""
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunError(f"cannot seal {path}: permission denied. Fix: make it writable "
                       f"(chmod u+w {path})")
    try:
        for name in _run_files(path):
            if name.endswith(".pt"):
                lacking = lacking_reason(spec, _load_tensors(path / name)) if name == "tensors.pt" \
                    else None
                if lacking:  # e.g. a legacy MTT set without its learned lr: not servable
                    raise RunError(f"{lacking}. Fix: {recompute_fix(path.name, path.parent)}")
            elif name.endswith(".json"):
                _read_json(path / name)
    except RunError as error:
        fix = "" if ". Fix: " in str(error) else f". Fix: {_recompute_fix(path)}"
        raise RunError(f"cannot seal {path.name}: {error}{fix}") from None
    lock = FileLock(str(path.parent / f"{path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunError(f"{path.name} is locked by another process; seal it later") from None
    try:
        metrics = _read_json(path / METRICS_FILE)
        if FILES_KEY not in metrics:
            metrics[FILES_KEY] = _run_files(path)
            atomic_write_text(path / METRICS_FILE, _dump_json(metrics))
    finally:
        lock.release()
    return examine(path, checksums=True)[0]
