"""What ``ptmdd runs`` prints: one run as JSON, the checks of the store, the list of runs."""

from __future__ import annotations

import json
import sys
import warnings

from ..spread import plus_minus
from ..store.runfiles import STATUSES


def show_run(store, run: str | None) -> int:
    """Print one run (id, path, spec, metrics without the loss history) as JSON; exit status 0."""
    if not run:
        raise ValueError("ptmdd runs show needs a run id or path")
    found = store.load(run)
    print(json.dumps({"id": found.id, "path": str(found.path), "spec": found.spec,
                      "metrics": {k: v for k, v in found.metrics.items() if k != "loss_history"},
                      "checksums": "legacy (none)" if found.legacy else "recorded"}, indent=2))
    return 0


def check_runs(store, run: str | None, kind: str | None, seal: bool) -> int:
    """Verify (and with ``seal``, seal) one run or every run of ``kind``; print the runs that are
    legacy or failing and the counts; exit status 1 if any is, else 0."""
    checks = [store.check_run(run, seal=seal)] if run else store.check(kind, seal=seal)
    for item in checks:
        if item.status in ("legacy", "failed") or run:
            print(f"{item.id}  {item.status}: {item.message()}")
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    print(f"{len(checks)} run folders in {store.root}: "
          + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 1 if counts["legacy"] or counts["failed"] else 0


def list_runs(store, kind: str | None) -> int:
    """Print each complete run of ``kind`` (all without) with its accuracy or final loss; the
    runs the store will not serve are warned about on stderr. Exit status 0."""
    store.require()
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        found_runs = store.runs(kind)
    for warning in skipped:
        print(f"ptmdd runs: warning: {warning.message}", file=sys.stderr)
    for found in found_runs:
        summary = found.metrics.get("summary")
        extra = (f"{plus_minus(summary['mean'], summary.get('std'), summary['n'])} %"
                 if summary else f"loss {found.metrics.get('final_loss')}")
        print(f"{found.id}  {extra}")
    return 0
