"""How the study's notebook kernels are started: over IPC (local sockets) rather than TCP.

ipykernel warns, once per kernel, "Kernel is running over TCP without encryption" when its
kernel manager connects over TCP, papermill's default; the study's kernels are local, so they are
started over IPC, which that warning itself recommends, and no other warning is hidden. Each
kernel's sockets live in a folder of its own: kernels started at once in one working directory
would otherwise pick the same socket names and read each other's messages.
"""

from __future__ import annotations

import os
from typing import Any


def papermill_kernel_options(folder: str | os.PathLike) -> dict[str, Any]:
    """Keyword arguments for ``papermill.execute_notebook`` that start the kernel over IPC on
    POSIX, its sockets in ``folder`` (one folder per kernel; ``{}`` on Windows, which has no IPC
    transport)."""
    if os.name == "nt":
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport": "ipc",
                                                "ip": os.path.join(folder, "kernel")}})}
