"""A content-addressed store of runs: each unit of work is a frozen dataclass spec, hashed to an id.

A spec's canonical JSON (:func:`canonical_json`) hashes to a run id such as
``distill-3fa9c1e07b2d4a11`` (:func:`spec_id`). :meth:`RunStore.get_or_compute` returns a complete
run without work, resumes an interrupted one from its checkpoint, and lets only one process compute
a given run (a file lock). Every file is written atomically (a temporary file in the same folder,
then ``os.replace``), and ``metrics.json`` is written last, so a killed process never leaves a run
that looks complete.

A field added to a spec class after runs were stored is declared with :func:`added_field`: at its
default it is left out of the canonical JSON, so the stored runs keep their ids.

On-disk layout (``<root>`` is ``RunStore(root)``, default ``$PTMDD_RUNS`` or ``./runs/store``)::

    <root>/
      <id>.lock              file lock held while a process computes <id>
      <id>/                  one run; <id> = <kind slug>-<first 16 hex of sha256(canonical JSON)>
        spec.json            the spec as canonical JSON data ("__kind__" names each dataclass)
        checkpoint.pt        latest checkpoint {"state": ..., "step": n}; only while incomplete
        log.txt              lines appended by RunContext.log (UTC time stamps)
        <name>.pt            tensors saved by RunContext.save_tensors (default name "tensors")
        grid.png             image grids saved by RunContext.save_image_grid
        provenance.json      package version, git commit, torch/python versions, device, host, time
        timings.json         seconds of the completing attempt: "compute_seconds" + add_timing
        metrics.json         the compute function's result; present <=> the run is complete
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch
from filelock import FileLock, Timeout

from .paths import resolve

if TYPE_CHECKING:
    import pandas

_LOG = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
METRICS_FILE = "metrics.json"
PROVENANCE_FILE = "provenance.json"
TIMINGS_FILE = "timings.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.txt"
KIND_KEY = "__kind__"
_TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0)
os.umask(_UMASK)

# Annotations (as written, ``from __future__ import annotations`` keeps them strings) of fields
# whose integer values are encoded as floats, so that ``lr=1`` and ``lr=1.0`` give one run id.
_FLOAT_ANNOTATIONS = {"float", "float | None", "Optional[float]"}
_FLOAT_TUPLE_ANNOTATIONS = {"tuple[float, ...]", "Tuple[float, ...]"}
# Field metadata key of :func:`added_field`.
OMIT_AT_DEFAULT = "omit_at_default"


def added_field(default: object) -> Any:
    """A spec field added after runs were stored: while it holds ``default`` it is left out of the
    spec's JSON, so the runs stored before it existed keep their ids."""
    return dataclasses.field(default=default, metadata={OMIT_AT_DEFAULT: True})


class RunError(Exception):
    """A run directory is missing, incomplete, unreadable or not a run of this store."""


# --------------------------------------------------------------------------- canonical specs


def _annotation_name(annotation: object) -> str:
    """The annotation as a string (``float`` -> ``"float"``), whatever the annotation style."""
    if isinstance(annotation, str):
        return annotation.replace("typing.", "").strip()
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _encode(value: object, where: str, annotation: str | None = None) -> object:
    """Turn a spec (or one of its values) into plain JSON data; ``where`` names it in errors."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if annotation in _FLOAT_ANNOTATIONS and type(value) is int:
            return float(value)
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}; spec values must be finite numbers")
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        encoded: dict[str, object] = {KIND_KEY: type(value).__name__}
        for item in dataclasses.fields(value):
            if item.name == KIND_KEY:
                raise TypeError(f"{where}: a field may not be called {KIND_KEY!r}")
            if item.metadata.get(OMIT_AT_DEFAULT) and getattr(value, item.name) == item.default:
                continue
            encoded[item.name] = _encode(
                getattr(value, item.name), f"{where}.{item.name}", _annotation_name(item.type)
            )
        return encoded
    if isinstance(value, (tuple, list)):
        inner = "float" if annotation in _FLOAT_TUPLE_ANNOTATIONS else None
        return [_encode(v, f"{where}[{i}]", inner) for i, v in enumerate(value)]
    if isinstance(value, dict):
        encoded = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}; spec dict keys must be strings")
            encoded[key] = _encode(v, f"{where}.{key}")
        return encoded
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r}); spec values must be None, bool, int, "
        "float, str, Path, tuples/lists, dicts with string keys or dataclasses"
    )


def spec_data(spec: object) -> dict:
    """Return ``spec`` (a dataclass, or its stored JSON data) as the plain data of its JSON."""
    encoded = _encode(spec, type(spec).__name__)
    if not isinstance(encoded, dict) or KIND_KEY not in encoded:
        raise TypeError(
            f"a spec must be a dataclass instance (or its stored data with {KIND_KEY!r}), "
            f"not {type(spec).__name__}"
        )
    return encoded


def canonical_json(spec: object) -> str:
    """Canonical JSON of a spec: ``__kind__`` at each dataclass, sorted keys, no whitespace."""
    return json.dumps(
        spec_data(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    )


def kind_slug(name: str) -> str:
    """Kind slug of a class name: lowercase, trailing "spec" removed (``DistillSpec``: distill)."""
    slug = name.lower()
    if slug.endswith("spec") and len(slug) > len("spec"):
        slug = slug[: -len("spec")]
    return slug


def spec_kind(spec: object) -> str:
    """The kind slug of a spec (a dataclass or its stored data)."""
    if isinstance(spec, dict):
        if KIND_KEY not in spec:
            raise TypeError(f"stored spec data has no {KIND_KEY!r} entry")
        return kind_slug(str(spec[KIND_KEY]))
    return kind_slug(type(spec).__name__)


def spec_id(spec: object) -> str:
    """Run id of a spec: ``<kind slug>-<first 16 hex chars of sha256(canonical_json(spec))>``."""
    digest = hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
    return f"{spec_kind(spec)}-{digest[:16]}"


def _flatten(data: object, prefix: str, out: dict[str, object], top: bool) -> None:
    """Flatten encoded spec data into ``out`` (dotted names, lists as tuples)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == KIND_KEY:
                if not top:
                    out[f"{prefix}.{KIND_KEY}"] = value
                continue
            _flatten(value, f"{prefix}.{key}" if prefix else key, out, False)
    elif isinstance(data, list):
        out[prefix] = _to_tuple(data)
    else:
        out[prefix] = data


def _to_tuple(value: object) -> object:
    """Lists (nested too) as tuples."""
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def spec_fields(spec: object) -> dict[str, object]:
    """Flat dict of a spec's fields: nested as ``"parent.child"``, tuples kept as tuples.

    A nested dataclass also gives ``"parent.__kind__"`` (its class name); a nested spec that is
    ``None`` gives ``"parent": None``. Works on a dataclass or on its stored JSON data.
    """
    out: dict[str, object] = {}
    _flatten(spec_data(spec), "", out, True)
    return out


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def _atomic_target(path: Path, mode: str) -> Iterator[IO[Any]]:
    """Yield a temporary file beside ``path``; on success fsync it and ``os.replace`` it there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        mode, dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX, delete=False,
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
    with _atomic_target(Path(path), "w") as handle:
        handle.write(text)


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically: temporary file, fsync, ``os.replace``."""
    with _atomic_target(Path(path), "wb") as handle:
        torch.save(obj, handle)


def _json_default(value: object) -> object:
    """JSON fallback for metrics: tensors and NumPy values become Python numbers or lists."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    for method in ("item", "tolist"):  # NumPy scalars and arrays, without importing NumPy
        if hasattr(value, method) and type(value).__module__ == "numpy":
            return getattr(value, method)()
    raise TypeError(f"metrics must be JSON data; got a {type(value).__name__}: {value!r}")


def _dump_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"


def _read_json(path: Path) -> dict:
    """Read a JSON object; ``RunError`` naming ``path`` if missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return data


def _load_tensors(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; ``RunError`` naming ``path`` on failure."""
    if not path.is_file():
        raise RunError(f"{path} is missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunError(f"cannot load {path} (weights_only=True): {first}") from None


# --------------------------------------------------------------------------- provenance


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit (``git rev-parse HEAD``) of the package's repository, or ``None``."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def provenance(device: str) -> dict[str, object]:
    """Where and with what a run was computed (versions, commit, device, threads, host, UTC time)."""
    from . import __version__

    return {
        "package_version": __version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),  # CPU results are bitwise reproducible at one count
        "hostname": socket.gethostname(),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """A complete stored run: its id, folder, decoded spec and metrics."""

    id: str
    path: Path
    spec: dict
    metrics: dict
    timings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The kind slug (``distill``, ``evaluation``, ...)."""
        return spec_kind(self.spec)

    def tensors(self, name: str = "tensors") -> dict[str, torch.Tensor]:
        """Load ``<path>/<name>.pt`` (``weights_only=True``, onto the CPU)."""
        return _load_tensors(self.path / f"{name}.pt")

    def fields(self) -> dict[str, object]:
        """The spec's flattened fields (see :func:`spec_fields`)."""
        return spec_fields(self.spec)


class RunContext:
    """What a compute function gets: the run folder, the spec, and atomic savers."""

    def __init__(self, path: Path, spec: object, device: str = "cpu") -> None:
        self.path = Path(path)
        self.spec = spec
        self.device = device
        self.timings: dict[str, float] = {}
        self.resumed_from: int | None = None

    def log(self, message: str) -> None:
        """Append ``message`` to ``<path>/log.txt`` with a UTC time stamp."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with open(self.path / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")

    def save_tensors(self, tensors: dict[str, torch.Tensor], name: str = "tensors") -> None:
        """Save a dict of tensors to ``<path>/<name>.pt`` atomically (moved to the CPU)."""
        cpu = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
               for k, v in tensors.items()}
        atomic_torch_save(cpu, self.path / f"{name}.pt")

    def save_checkpoint(self, state: dict, step: int) -> None:
        """Atomically replace the checkpoint by ``state`` after ``step`` (weights_only-loadable)."""
        atomic_torch_save({"state": state, "step": int(step)}, self.path / CHECKPOINT_FILE)

    def load_checkpoint(self) -> tuple[dict, int] | None:
        """The latest ``(state, step)``, or ``None``; an unreadable checkpoint is warned about."""
        path = self.path / CHECKPOINT_FILE
        if not path.is_file():
            return None
        try:
            saved = _load_tensors(path)
            state, step = saved["state"], int(saved["step"])
        except (RunError, KeyError, TypeError, ValueError) as error:
            message = f"ignoring the unreadable checkpoint {path} and starting over: {error}"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.log(message)
            return None
        self.resumed_from = step
        self.log(f"resuming from the checkpoint at step {step}")
        return state, step

    def save_image_grid(
        self, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], nrow: int,
        name: str = "grid.png",
    ) -> None:
        """Denormalize ``images`` (N, C, H, W), clamp to [0, 1], save a PNG grid atomically."""
        from torchvision.utils import save_image

        images = images.detach().cpu().float()
        if images.dim() != 4 or images.shape[1] != len(mean) or len(mean) != len(std):
            raise ValueError(
                f"images of shape {tuple(images.shape)} do not match {len(mean)} means and "
                f"{len(std)} stds; expected (N, C, H, W) with C of each"
            )
        shape = (1, len(mean), 1, 1)
        pixels = images * torch.tensor(list(std)).view(shape) + torch.tensor(list(mean)).view(shape)
        target = self.path / name
        with _atomic_target(target, "wb") as handle:
            save_image(pixels.clamp(0, 1), handle, nrow=max(1, int(nrow)), format="png")

    def add_timing(self, key: str, seconds: float) -> None:
        """Add ``seconds`` under ``key`` in ``timings.json`` (summed when added again)."""
        self.timings[key] = self.timings.get(key, 0.0) + float(seconds)


class RunStore:
    """Runs under one root folder, addressed by spec (see the module docstring for the layout)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = resolve("store", root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def path(self, spec: object) -> Path:
        """The folder of ``spec``'s run (whether or not it exists)."""
        return self.root / spec_id(spec)

    def exists(self, spec: object) -> bool:
        """Whether ``spec``'s run is complete (its ``metrics.json`` exists)."""
        return (self.path(spec) / METRICS_FILE).is_file()

    def get(self, spec: object) -> Run | None:
        """The complete run of ``spec``, or ``None``."""
        path = self.path(spec)
        if not (path / METRICS_FILE).is_file():
            return None
        return self.load(path)

    def get_or_compute(
        self, spec: object, compute: Callable[[RunContext], dict], *, device: str = "cpu"
    ) -> Run:
        """Return ``spec``'s run, computing (or resuming) it under a file lock if incomplete."""
        run_id = spec_id(spec)
        existing = self.get(spec)
        if existing is not None:
            return existing
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / f"{run_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            _LOG.info("waiting for another process computing %s", run_id)
            lock.acquire()
        try:
            existing = self.get(spec)
            if existing is not None:
                return existing
            return self._compute(spec, run_id, compute, str(device))
        finally:
            lock.release()

    def _compute(
        self, spec: object, run_id: str, compute: Callable[[RunContext], dict], device: str
    ) -> Run:
        """Compute ``spec``'s run in its folder (the caller holds the lock)."""
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob(f".*{_TMP_SUFFIX}"):  # left by a killed writer; we hold the lock
            with suppress(OSError):
                stale.unlink()
        spec_path = path / SPEC_FILE
        if spec_path.exists():
            stored = _read_json(spec_path)
            try:
                same = canonical_json(stored) == canonical_json(spec)
            except (TypeError, ValueError):
                same = False
            if not same:
                raise RunError(
                    f"{spec_path} holds a different spec than the one asked for ({run_id}); "
                    "the folder was edited or copied here; move it away to recompute"
                )
        else:
            atomic_write_text(spec_path, _dump_json(spec_data(spec)))
        ctx = RunContext(path, spec, device)
        ctx.log(f"computing {run_id} on {device}")
        start = time.perf_counter()
        try:
            metrics = compute(ctx)
        except BaseException as error:
            with suppress(OSError):
                ctx.log(f"interrupted: {type(error).__name__}: {error}")
            raise
        elapsed = time.perf_counter() - start
        if not isinstance(metrics, dict):
            raise TypeError(f"the compute function of {run_id} returned a "
                            f"{type(metrics).__name__}, not a dict of metrics")
        metrics_text = _dump_json(metrics)  # fails before anything marks the run complete
        info = provenance(device)
        info["resumed_from_step"] = ctx.resumed_from
        timings = {"compute_seconds": elapsed, **ctx.timings}
        atomic_write_text(path / PROVENANCE_FILE, _dump_json(info))
        atomic_write_text(path / TIMINGS_FILE, _dump_json(timings))
        atomic_write_text(path / METRICS_FILE, metrics_text)
        with suppress(OSError):
            (path / CHECKPOINT_FILE).unlink(missing_ok=True)
        ctx.log(f"complete in {elapsed:.1f} s")
        return self.load(path)

    def _resolve(self, id_or_path: str | Path) -> Path:
        """The folder named by a run id (under the root) or a path."""
        text = str(id_or_path)
        by_id = self.root / text
        looks_like_path = isinstance(id_or_path, Path) or os.sep in text or (
            os.altsep is not None and os.altsep in text
        )
        if not looks_like_path and by_id.is_dir():
            return by_id
        candidate = Path(text).expanduser()
        if candidate.is_dir():
            return candidate
        if looks_like_path:
            raise RunError(f"no run directory at {candidate}")
        raise RunError(f"no run {text!r} in the store {self.root} (no directory {by_id})")

    def load(self, id_or_path: str | Path) -> Run:
        """Load a complete run by id (under the root) or by its folder; ``RunError`` otherwise."""
        path = self._resolve(id_or_path)
        spec_path, metrics_path = path / SPEC_FILE, path / METRICS_FILE
        if not spec_path.is_file():
            raise RunError(f"{path} is not a run directory: it has no {SPEC_FILE}")
        spec = _read_json(spec_path)
        if KIND_KEY not in spec:
            raise RunError(f"{spec_path} is not a spec of this store: it has no {KIND_KEY!r}")
        if not metrics_path.is_file():
            raise RunError(
                f"{path} is an incomplete run (no {METRICS_FILE}): it was interrupted or is "
                "still being computed; ask for its spec again to resume it"
            )
        metrics = _read_json(metrics_path)
        try:
            run_id = spec_id(spec)
        except (TypeError, ValueError) as error:
            raise RunError(f"{spec_path} is not a valid spec: {error}") from None
        timings = _read_json(path / TIMINGS_FILE) if (path / TIMINGS_FILE).is_file() else {}
        info = _read_json(path / PROVENANCE_FILE) if (path / PROVENANCE_FILE).is_file() else {}
        return Run(id=run_id, path=path, spec=spec, metrics=metrics, timings=timings,
                   provenance=info)

    def runs(self, kind: str | None = None) -> list[Run]:
        """Complete runs in id order, optionally of one kind (slug or class name)."""
        if not self.root.is_dir():
            return []
        wanted = kind_slug(kind) if kind is not None else None
        found = []
        for path in sorted(self.root.iterdir()):
            if not path.is_dir() or not (path / METRICS_FILE).is_file():
                continue
            if wanted is not None and path.name.rsplit("-", 1)[0] != wanted:
                continue
            try:
                run = self.load(path)
            except RunError as error:
                warnings.warn(f"skipping an unreadable run: {error}", RuntimeWarning, stacklevel=2)
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

        records = []
        for run in self.runs(kind):
            base = {"run_id": run.id, "kind": run.kind, **spec_fields(run.spec)}
            rows = run.metrics.get("rows")
            if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
                entries = rows
            else:
                entries = [_scalar_metrics(run.metrics)]
            for entry in entries:
                record = dict(base)
                for key, value in entry.items():
                    value = _to_tuple(value)
                    if key in base and not _same(base[key], value):
                        record[f"row.{key}"] = value
                    else:
                        record[key] = value
                records.append(record)
        table = pd.DataFrame.from_records(records)
        for column, value in filters.items():
            if table.empty:
                break
            if column not in table.columns:
                columns = ", ".join(map(str, table.columns))
                raise ValueError(f"no column {column!r} to filter on; columns: {columns}")
            keep = [_matches(cell, value) for cell in table[column]]
            table = table[keep]
        return table.reset_index(drop=True)


def _scalar_metrics(metrics: dict) -> dict[str, object]:
    """Scalar metrics of a run without rows (dicts of scalars flattened as ``"name.key"``)."""
    out: dict[str, object] = {}
    for key, value in metrics.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, dict):
            for inner, item in value.items():
                if item is None or isinstance(item, (bool, int, float, str)):
                    out[f"{key}.{inner}"] = item
    return out


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values are different
        return False


def _matches(cell: object, value: object) -> bool:
    """Whether a frame cell passes a filter value (equal, or one of a list/tuple/set)."""
    if _same(cell, value):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_same(cell, v) for v in value)
    if isinstance(value, float) and isinstance(cell, float):
        return math.isnan(value) and math.isnan(cell)
    return False


__all__ = [
    "Run", "RunContext", "RunError", "RunStore", "atomic_torch_save", "atomic_write_text",
    "canonical_json", "git_commit", "kind_slug", "provenance", "spec_data", "spec_fields",
    "spec_id", "spec_kind",
]
