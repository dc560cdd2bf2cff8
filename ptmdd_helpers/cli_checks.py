"""Checks of ``ptmdd`` arguments that span options or need the store (kept out of :mod:`.cli`).

Each raises ``ValueError`` with one paragraph naming the option and the fix, which the command line
shows without a traceback (exit status 2), before anything is computed or written.
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
    from .store import kind_slug

    if kind is None:
        return
    known = set(RUN_KINDS)
    if store.root.is_dir():
        known |= {path.name.rsplit("-", 1)[0] for path in store.root.iterdir()
                  if path.is_dir() and not path.name.startswith(".") and "-" in path.name}
    if kind_slug(kind) not in known:
        raise ValueError(f"--kind {kind!r} is not a kind of run; valid: {', '.join(sorted(known))} "
                         f"(leave --kind out for every run)")

