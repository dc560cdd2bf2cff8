"""Checks of ``ptmdd`` arguments that span options or need the store (kept out of :mod:`.commands`).

Each raises ``ValueError`` with one paragraph naming the option and the fix, which the command line
shows without a traceback (exit status 2), before anything is computed or written;
:func:`user_errors` is the one list of the exception types shown that way.
"""

from __future__ import annotations

import argparse

RUN_KINDS = ("distill", "evaluation")  # the kinds of run the ptmdd commands store


def check_one_subject(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` unless ``ptmdd evaluate`` got at most one training set (a run id,
    ``--random-real`` or ``--whole``): the others would be silently ignored."""
    given = [name for name, value in (("a run id", args.run), ("--random-real", args.random_real),
                                      ("--whole", args.whole)) if value]
    if len(given) > 1:
        raise ValueError(f"give one training set to evaluate, not {' and '.join(given)}: a run id "
                         f"or path of a distillation, --random-real DATASET IPC, or --whole "
                         f"DATASET (run `ptmdd evaluate` once per set)")


def check_run_kind(store, kind: str | None) -> None:
    """Raise ``ValueError`` naming the valid kinds unless ``kind`` (``--kind``) is ``None``, a kind
    the ptmdd commands store (:data:`RUN_KINDS`) or a kind of run found in ``store``."""
    from ..specs import kind_slug
    from ..store.runfiles import folder_kind

    if kind is None:
        return
    known = set(RUN_KINDS) | {folder_kind(path) for path in store.folders() if "-" in path.name}
    if kind_slug(kind) not in known:
        raise ValueError(f"--kind {kind!r} is not a kind of run; valid: {', '.join(sorted(known))} "
                         f"(leave --kind out for every run)")


def user_errors() -> tuple[type[BaseException], ...]:
    """Return the exception types that mean bad input and are shown without a traceback."""
    from ..data.datasets import DataUnavailableError
    from ..distill import DistillationDiverged
    from ..pools.members import PoolError
    from ..store.runfiles import RunError

    return ValueError, DataUnavailableError, PoolError, DistillationDiverged, RunError
