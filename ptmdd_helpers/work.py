"""What this process computed: a counter the store and the pools advance when they do real work.

A study's executor compares it before and after a task to tell a task it computed from one that
another process finished while this one waited for the lock (``study.tasks``).
"""

from __future__ import annotations

_COMPUTED = 0


def record_computed() -> None:
    """Note that this process computed a run, or trained a pool member's epoch."""
    global _COMPUTED
    _COMPUTED += 1


def computed_count() -> int:
    """How many computations this process has recorded so far."""
    return _COMPUTED
