"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``, so an
interrupted process never leaves a file that looks complete (runs, pools and checkpoints)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import torch

TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_target(path: Path, mode: str) -> Iterator[IO[Any]]:
    """Yield a temporary file beside ``path``; on success fsync it and ``os.replace`` it there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        mode, dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX, delete=False,
        **({"encoding": "utf-8"} if "b" not in mode else {}),
    )
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        os.replace(handle.name, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(handle.name)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: temporary file, fsync, ``os.replace``."""
    with atomic_target(Path(path), "w") as handle:
        handle.write(text)


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically: temporary file, fsync, ``os.replace``."""
    with atomic_target(Path(path), "wb") as handle:
        torch.save(obj, handle)
