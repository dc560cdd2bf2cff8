"""A content-addressed store of runs: each unit of work is a frozen dataclass spec, hashed to an id.

A spec's canonical JSON (:func:`canonical_json`) hashes to a run id such as
``distill-3fa9c1e07b2d4a11`` (:func:`spec_id`; both live in :mod:`ptmdd_helpers.specs`).
:meth:`RunStore.computing` (the one way a run is computed: ``runs.distill_run``,
``evaluations.evaluation_run``) serves a complete run without work, resumes an interrupted one from its
checkpoint, and lets only one process compute a given run (a file lock). Every file is written
atomically, and ``metrics.json`` is written last, so a killed process never leaves a run that looks
complete.

The store verifies what it serves. A run is complete when its ``spec.json`` hashes to its folder
name and every file that ``metrics.json`` lists under ``"__files__"`` is there with its recorded
size; :meth:`RunStore.check_run` (``ptmdd runs check``) also compares each file's sha256. A run
that fails is never served (:meth:`RunStore.get` warns and returns ``None``); asking for it again
raises :class:`RunError` unless ``recompute=True`` (``--recompute``), which moves its folder to
``<root>/.quarantine/`` and computes it again. Runs stored before checksums existed ("legacy") are
served when their spec hashes to their id; :meth:`RunStore.seal` (``ptmdd runs check --seal``)
adds the checksums of their current files.
The on-disk layout is described in :mod:`.runfiles`.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from ..atomic import TMP_SUFFIX, atomic_write_text
from ..paths import resolve
from ..specs import (
    kind_slug,
    spec_data,
    spec_id,
)
from ..work import record_computed
from .frames import filter_frame, run_records
from .repair import seal_legacy, unserved_note
from .runfiles import (
    CHECKPOINT_FILE,
    FILES_KEY,
    METRICS_FILE,
    PROVENANCE_FILE,
    QUARANTINE_DIR,
    SPEC_FILE,
    TIMINGS_FILE,
    Run,
    RunCheck,
    RunContext,
    RunError,
    _dump_json,
    _read_json,
    _recompute_fix,
    _run_files,
    examine,
    folder_kind,
    provenance,
)

if TYPE_CHECKING:
    import pandas

_LOG = logging.getLogger(__name__)
_STORE_HINT = "--store or $PTMDD_RUNS"


class Job:
    """One run being served or computed (see :meth:`RunStore.computing`)."""

    def __init__(self, store: RunStore, run: Run | None, context: RunContext | None = None) -> None:
        self.store, self.run, self.context = store, run, context
        self._start = time.perf_counter()

    def complete(self, metrics: dict) -> Run:
        """Mark the run complete with ``metrics`` (files written, ``metrics.json`` last)."""
        if self.context is None or self.run is not None:
            raise RuntimeError("this run is already complete")
        self.run = self.store._complete(self.context, metrics, time.perf_counter() - self._start)
        return self.run


class RunStore:
    """Runs under one root folder, addressed by spec (see the module docstring for the layout)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = resolve("store", root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def path(self, spec: object) -> Path:
        """The folder of ``spec``'s run (whether or not it exists)."""
        return self.root / spec_id(spec)

    # ----------------------------------------------------------------- folder access

    def _readable(self) -> bool:
        """Whether the root exists as a folder; ``RunError`` naming the fix if it is unreadable."""
        try:
            present = self.root.is_dir()
        except OSError:
            present = True  # its parent is unreadable: reported below
        if present and not os.access(self.root, os.R_OK | os.X_OK):
            raise RunError(
                f"cannot read the run store {self.root}: permission denied. Fix: make it readable "
                f"(chmod u+rx {self.root}) or point {_STORE_HINT} at another store")
        return present

    def require(self) -> None:
        """Raise :class:`RunError` unless the store's folder exists and is readable."""
        if not self._readable():
            raise RunError(f"no store at {self.root}: nothing was computed there. Fix: point "
                           f"{_STORE_HINT} at an existing store (or compute a run there first)")

    def _require_writable(self, path: Path) -> None:
        """``RunError`` naming the fix unless ``path`` (a run folder) can be created or written."""
        targets = [path] if path.is_dir() else []
        nearest = self.root
        with suppress(OSError):  # an unsearchable ancestor: os.access below reports it
            while not nearest.exists() and nearest != nearest.parent:
                nearest = nearest.parent
        for target in [nearest, *targets]:
            if not os.access(target, os.W_OK | os.X_OK):
                raise RunError(
                    f"cannot write to {target}: permission denied, so the run {path.name} cannot be "
                    f"computed in the store {self.root}. Fix: make it writable (chmod u+w {target})"
                    f" or point {_STORE_HINT} at a writable store")

    def _resolve(self, id_or_path: str | Path) -> Path:
        """The folder named by a run id (under the root) or a path."""
        text = str(id_or_path)
        by_id = self.root / text
        looks_like_path = isinstance(id_or_path, Path) or os.sep in text or (
            os.altsep is not None and os.altsep in text
        )
        if not looks_like_path and self._readable() and by_id.is_dir():
            return by_id
        candidate = Path(text).expanduser()
        if candidate.is_dir():
            return candidate
        if looks_like_path:
            raise RunError(f"no run directory at {candidate}")
        raise RunError(f"no run {text!r} in the store {self.root} (no directory {by_id})")

    # ----------------------------------------------------------------- serving

    def _served(self, path: Path) -> tuple[RunCheck | None, Run | None]:
        """The cheap check of ``path`` (no checksums) and its run when it may be served."""
        if not path.is_dir():
            return None, None
        check, spec, metrics, files = examine(path, checksums=False)
        if not check.servable:
            return check, None
        timings = _read_json(path / TIMINGS_FILE) if (path / TIMINGS_FILE).is_file() else {}
        info = _read_json(path / PROVENANCE_FILE) if (path / PROVENANCE_FILE).is_file() else {}
        return check, Run(id=check.id, path=path, spec=spec, metrics=metrics, timings=timings,
                          provenance=info, files=files)

    def exists(self, spec: object) -> bool:
        """Whether ``spec``'s run is complete and passes the cheap check (spec, files and sizes)."""
        path = self.path(spec)
        if not self._readable() or not (path / METRICS_FILE).is_file():
            return False
        return examine(path, checksums=False)[0].servable

    def get(self, spec: object) -> Run | None:
        """The complete run of ``spec``, or ``None``; a run failing the check is warned about."""
        path = self.path(spec)
        if not self._readable() or not (path / METRICS_FILE).is_file():
            return None
        try:
            check, run = self._served(path)
        except RunError as error:
            check, run = RunCheck(path.name, path, "failed", [str(error)], _recompute_fix(path)), None
        if run is None and check is not None:
            warnings.warn(f"not serving {check.id}: {unserved_note(check)}", RuntimeWarning, stacklevel=2)
        return run

    def load(self, id_or_path: str | Path) -> Run:
        """Load a complete run by id (under the root) or by its folder; ``RunError`` otherwise."""
        path = self._resolve(id_or_path)
        check, run = self._served(path)
        if run is None:
            raise RunError(check.message() if check else f"no run directory at {path}")
        return run

    def _refusal(self, check: RunCheck) -> str:
        return (f"the stored run {check.id} fails verification: {'; '.join(check.problems)}. Fix: "
                f"run `ptmdd runs check --store {self.root}` to list such runs, and recompute this "
                f"one with --recompute (recompute=True in Python), which moves its folder to "
                f"{self.root / QUARANTINE_DIR}/ and computes it again")

    # ----------------------------------------------------------------- computing

    @contextmanager
    def computing(self, spec: object, *, device: str = "cpu",
                  recompute: bool = False) -> Iterator[Job]:
        """A :class:`Job` for ``spec``: its stored run, or a context to compute it in.

        The caller computes in the ``with`` body when ``job.run`` is ``None`` and ends with
        ``job.complete(metrics)``; the file lock is held meanwhile, so one process computes a run.
        A stored run that fails verification raises :class:`RunError`; with ``recompute`` its
        folder is moved to ``<root>/.quarantine/<id>-<UTC stamp>/`` and the run computed again.
        """
        run_id = spec_id(spec)
        path = self.root / run_id
        self._readable()
        check, existing = self._served(path)
        if existing is not None:
            yield Job(self, existing)
            return
        if check is not None and check.status == "failed" and not recompute:
            raise RunError(self._refusal(check))
        self._require_writable(path)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.root / f"{run_id}.lock"))
            lock.acquire(timeout=0)
        except Timeout:
            _LOG.info("waiting for another process computing %s", run_id)
            lock.acquire()
        except PermissionError as error:
            raise RunError(f"cannot write to the run store {self.root}: {error}. Fix: make it "
                           f"writable or point {_STORE_HINT} at a writable store") from None
        try:
            check, existing = self._served(path)
            if existing is not None:
                yield Job(self, existing)
                return
            moved = None
            if check is not None and check.status == "failed":
                if not recompute:
                    raise RunError(self._refusal(check))
                moved = self._quarantine(path)
                _LOG.warning("%s failed verification (%s); moved it to %s and computing it again",
                             run_id, "; ".join(check.problems), moved)
            job = Job(self, None, self._open(spec, run_id, str(device), check if moved else None,
                                             moved))
            try:
                yield job
            except BaseException as error:
                with suppress(OSError):
                    job.context.log(f"interrupted: {type(error).__name__}: {error}")
                raise
            if job.run is None:
                raise RuntimeError(f"the computation of {run_id} ended without job.complete()")
        finally:
            lock.release()

    def _quarantine(self, path: Path) -> Path:
        """Move a run folder to ``<root>/.quarantine/<id>-<UTC stamp>/`` (the caller holds the lock)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        folder = self.root / QUARANTINE_DIR
        folder.mkdir(exist_ok=True)
        target, n = folder / f"{path.name}-{stamp}", 1
        while target.exists():
            target, n = folder / f"{path.name}-{stamp}-{n}", n + 1
        path.rename(target)
        return target

    def _open(self, spec: object, run_id: str, device: str, failed: RunCheck | None,
              moved: Path | None) -> RunContext:
        """Prepare ``spec``'s folder for computing (the caller holds the lock)."""
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob(f".*{TMP_SUFFIX}"):  # left by a killed writer; we hold the lock
            with suppress(OSError):
                stale.unlink()
        if not (path / SPEC_FILE).exists():  # present: _served checked it hashes to run_id
            atomic_write_text(path / SPEC_FILE, _dump_json(spec_data(spec)))
        ctx = RunContext(path, spec, device)
        if failed is not None:
            ctx.log(f"recomputing: the previous folder failed verification "
                    f"({'; '.join(failed.problems)}) and was moved to {moved}")
        ctx.log(f"computing {run_id} on {device}")
        return ctx

    def _complete(self, ctx: RunContext, metrics: object, elapsed: float) -> Run:
        """Write a computed run's files, ``metrics.json`` last, and load it back."""
        path, run_id = ctx.path, ctx.path.name
        if not isinstance(metrics, dict):
            raise TypeError(f"the compute function of {run_id} returned a "
                            f"{type(metrics).__name__}, not a dict of metrics")
        if FILES_KEY in metrics:
            raise TypeError(f"the metrics of {run_id} may not hold the key {FILES_KEY!r}: the "
                            "store keeps the files' checksums there")
        _dump_json(metrics)  # fails before anything marks the run complete
        info = provenance(ctx.device)
        info["resumed_from_step"] = ctx.resumed_from
        timings = {"compute_seconds": elapsed, **ctx.timings}
        atomic_write_text(path / PROVENANCE_FILE, _dump_json(info))
        atomic_write_text(path / TIMINGS_FILE, _dump_json(timings))
        atomic_write_text(path / METRICS_FILE, _dump_json({**metrics, FILES_KEY: _run_files(path)}))
        with suppress(OSError):
            (path / CHECKPOINT_FILE).unlink(missing_ok=True)
        ctx.log(f"complete in {elapsed:.1f} s")
        record_computed()
        return self.load(path)

    # ----------------------------------------------------------------- verification

    def check_run(self, id_or_path: str | Path, *, checksums: bool = True,
                  seal: bool = False) -> RunCheck:
        """Verify one run (spec hashes to the id; listed files present, sized, unchanged).

        With ``seal`` a legacy run is sealed (:meth:`seal`); one that cannot be comes back failed.
        """
        path = self._resolve(id_or_path)
        check = examine(path, checksums)[0]
        if seal and check.status == "legacy":
            try:
                return self.seal(path)
            except RunError as error:
                return RunCheck(check.id, path, "failed", [str(error)])
        return check

    def verify(self, id_or_path: str | Path) -> list[str]:
        """The problems of one run (empty when it is verified, i.e. complete with checksums)."""
        check = self.check_run(id_or_path)
        return [] if check.status == "verified" else check.problems

    def check(self, kind: str | None = None, *, checksums: bool = True,
              seal: bool = False) -> list[RunCheck]:
        """Verify (and with ``seal``, seal) every run folder of the store, optionally of one kind."""
        self.require()
        return [self.check_run(path, checksums=checksums, seal=seal) for path in self.folders(kind)]

    def seal(self, id_or_path: str | Path) -> RunCheck:
        """Write the checksums of a legacy run's current files into its ``metrics.json``.

        Each ``.pt`` file must load with ``torch.load(weights_only=True)`` and each JSON file
        parse first; a run that is not legacy is left as it is (a failing one raises ``RunError``).
        """
        path = self._resolve(id_or_path)
        check, spec = examine(path, checksums=True)[:2]
        if check.status == "verified":
            return check
        if check.status != "legacy":
            raise RunError(check.message())
        return seal_legacy(path, spec)

    # ----------------------------------------------------------------- listing

    def folders(self, kind: str | None = None) -> list[Path]:
        """The run folders of the store in id order (of one kind, given one), complete or not."""
        if not self._readable():
            return []
        wanted = kind_slug(kind) if kind is not None else None
        return [path for path in sorted(self.root.iterdir())
                if path.is_dir() and not path.name.startswith(".")
                and (wanted is None or folder_kind(path) == wanted)]

    def runs(self, kind: str | None = None) -> list[Run]:
        """Complete runs in id order, optionally of one kind; failing runs are warned about."""
        wanted = kind_slug(kind) if kind is not None else None
        found = []
        for path in self.folders(kind):
            if not (path / METRICS_FILE).is_file():
                continue
            try:
                check, run = self._served(path)
                if run is None:
                    raise RunError(check.message())
            except RunError as error:
                warnings.warn(f"skipping the unreadable or unverified run {path.name}: {error}",
                              RuntimeWarning, stacklevel=2)
                continue
            if wanted is None or run.kind == wanted:
                found.append(run)
        return found

    def frame(self, kind: str | None = None, **filters: object) -> pandas.DataFrame:
        """Tidy frame: a row per ``metrics["rows"]`` entry (or one per run), spec fields as columns.

        Columns: ``run_id``, ``kind``, every spec field (:func:`spec_fields`), then the row's
        entries (for a run without ``rows``: its scalar metrics, dicts of scalars flattened as
        ``"name.key"``). A row entry named like a spec field is merged when equal to it and kept
        as ``"row.<name>"`` otherwise. ``filters`` keep rows whose column equals the value, or is
        one of the values of a list/tuple/set.
        """
        import pandas as pd

        records = [record for run in self.runs(kind) for record in run_records(run)]
        table = pd.DataFrame.from_records(records)
        return filter_frame(table, filters)


__all__ = [
    "Job", "RunStore",
]
