"""The files of one run folder: atomic writes, JSON and tensor reads, checksums, verification.

Every file is written atomically (a temporary file in the same folder, fsync, then ``os.replace``).
:func:`examine` verifies a run folder: its ``spec.json`` must hash to the folder name, and every
file that ``metrics.json`` lists under ``"__files__"`` must be there with its recorded size (and,
with ``checksums=True``, its sha256). :class:`RunContext` is what a compute function gets. The
store (:mod:`.runstore`) builds on these.

On-disk layout (``<root>`` is ``RunStore(root)``, default ``$PTMDD_RUNS``, else ``runs/store``)::

    <root>/
      <id>.lock              file lock held while a process computes (or seals) <id>
      .quarantine/<id>-<UTC stamp>/   a folder that failed verification, moved aside to recompute
      <id>/                  one run; <id> = <kind slug>-<first 16 hex of sha256(canonical JSON)>
        spec.json            the spec as canonical JSON data ("__kind__" names each dataclass)
        checkpoint.pt        {"state": ..., "step": n, "threads": t}; only while incomplete
        log.txt              lines appended by RunContext.log (UTC time stamps)
        <name>.pt            tensors saved by RunContext.save_tensors (default name "tensors")
        grid.png             image grids saved by RunContext.save_image_grid
        provenance.json      package version, git commit, torch/python versions, device, host, time
        timings.json         seconds of the completing attempt: "compute_seconds" + add_timing
        metrics.json         the compute function's result, plus "__files__": {file: {"bytes",
                             "sha256"}} of every other file but log.txt and checkpoint.pt;
                             present <=> the run is complete
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_target, atomic_torch_save
from ..specs import KIND_KEY, spec_fields, spec_id, spec_kind

SPEC_FILE = "spec.json"
METRICS_FILE = "metrics.json"
PROVENANCE_FILE = "provenance.json"
TIMINGS_FILE = "timings.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.txt"
FILES_KEY = "__files__"  # metrics.json: {relative file name: {"bytes": n, "sha256": hex}}
QUARANTINE_DIR = ".quarantine"
UNCHECKED_FILES = frozenset({LOG_FILE, CHECKPOINT_FILE, METRICS_FILE})
STATUSES = ("verified", "legacy", "incomplete", "failed")
_CHUNK = 1 << 20


class RunError(Exception):
    """A run directory is missing, incomplete, unreadable or not a run of this store."""


def folder_kind(path: Path) -> str:
    """The kind slug a run folder's name begins with (``distill`` for ``distill-3fa9…``)."""
    return path.name.rsplit("-", 1)[0]


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




def file_sha256(path: Path) -> str:
    """The sha256 hex digest of the file at ``path`` (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, object]:
    """The checksum entry of a file: ``{"bytes": size, "sha256": hex digest}``."""
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


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
    from .. import __version__

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
    """A complete stored run: its id, folder, decoded spec and metrics (without ``__files__``)."""

    id: str
    path: Path
    spec: dict
    metrics: dict
    timings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The kind slug (``distill``, ``evaluation``, ...)."""
        return spec_kind(self.spec)

    @property
    def legacy(self) -> bool:
        """Whether the run was stored without checksums (before the store verified its files)."""
        return not self.files

    def tensors(self, name: str = "tensors") -> dict[str, torch.Tensor]:
        """Load ``<path>/<name>.pt`` (``weights_only=True``, onto the CPU), checking its sha256."""
        path, entry = self.path / f"{name}.pt", self.files.get(f"{name}.pt")
        if isinstance(entry, dict) and path.is_file() and file_sha256(path) != entry.get("sha256"):
            raise RunError(
                f"{path} does not match the sha256 recorded in {self.path / METRICS_FILE}: it was "
                f"changed after the run completed. Run `ptmdd runs check` and recompute {self.id} "
                "with --recompute (recompute=True in Python)")
        return _load_tensors(path)

    def fields(self) -> dict[str, object]:
        """The spec's flattened fields (see :func:`spec_fields`)."""
        return spec_fields(self.spec)


@dataclass
class RunCheck:
    """The verdict on one run folder: ``status`` is one of :data:`STATUSES`."""

    id: str
    path: Path
    status: str
    problems: list[str] = field(default_factory=list)
    fix: str = ""

    @property
    def servable(self) -> bool:
        """Whether the store serves the run (verified, or legacy with a matching spec)."""
        return self.status in ("verified", "legacy")

    def message(self) -> str:
        """The problems and the fix, as one paragraph."""
        text = "; ".join(self.problems) or ("its spec hashes to its id and every listed file "
                                            "matches its size and sha256")
        return f"{text}. Fix: {self.fix}" if self.fix else text


def _recompute_fix(path: Path) -> str:
    return (f"ask for the run again with --recompute (recompute=True in Python): its folder is "
            f"moved to {path.parent / QUARANTINE_DIR}/ and the run is computed again")


def examine(path: Path, checksums: bool) -> tuple[RunCheck, dict | None, dict | None, dict]:
    """Verify one run folder: (check, spec, metrics without ``__files__``, files)."""
    name, spec_path, metrics_path = path.name, path / SPEC_FILE, path / METRICS_FILE

    def verdict(status: str, problem: str, fix: str = "") -> tuple[RunCheck, None, None, dict]:
        """A verdict with one problem and nothing to serve."""
        return RunCheck(name, path, status, [problem], fix), None, None, {}

    if not spec_path.is_file():
        if metrics_path.is_file():
            return verdict("failed", f"{path} has a {METRICS_FILE} but no {SPEC_FILE}",
                           _recompute_fix(path))
        return verdict("incomplete", f"{path} is not a run directory: it has no {SPEC_FILE}")
    try:
        spec = _read_json(spec_path)
    except RunError as error:
        return verdict("failed", str(error), _recompute_fix(path))
    if KIND_KEY not in spec:
        return verdict("failed", f"{spec_path} is not a spec of this store: it has no {KIND_KEY!r}",
                       _recompute_fix(path))
    try:
        actual = spec_id(spec)
    except (TypeError, ValueError) as error:
        return verdict("failed", f"{spec_path} is not a valid spec: {error}", _recompute_fix(path))
    if actual != name:
        return verdict(
            "failed",
            f"{spec_path} holds a different spec than its folder name says: it hashes to {actual}, "
            f"not {name} (the file was edited by hand, or the folder renamed or copied here)",
            f"restore the spec.json that hashes to {name}, or move {path} out of the store; "
            + _recompute_fix(path))
    if not metrics_path.is_file():
        return verdict(
            "incomplete", f"{path} is an incomplete run (no {METRICS_FILE}): it was interrupted or "
            "is still being computed; ask for its spec again to resume it")
    try:
        metrics = _read_json(metrics_path)
    except RunError as error:
        return verdict("failed", str(error), _recompute_fix(path))
    files = metrics.pop(FILES_KEY, None)
    if files is None:
        check = RunCheck(name, path, "legacy",
                         [f"{name} has no checksums in {METRICS_FILE} (stored before verification)"],
                         f"seal it: ptmdd runs check --seal --store {path.parent}")
        return check, spec, metrics, {}
    problems = _file_problems(path, files, checksums)
    if problems:
        return RunCheck(name, path, "failed", problems, _recompute_fix(path)), None, None, {}
    return RunCheck(name, path, "verified"), spec, metrics, files


def _file_problems(path: Path, files: object, checksums: bool) -> list[str]:
    """What is wrong with the files listed in a run's metrics (missing, resized, changed)."""
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
        return [f"{path / METRICS_FILE} has a malformed {FILES_KEY!r} entry"]
    problems = []
    for name, entry in sorted(files.items()):
        target = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{path / METRICS_FILE} lists a file outside the run: {name!r}")
        elif not target.is_file():
            problems.append(f"{target} is missing")
        elif target.stat().st_size != entry.get("bytes"):
            problems.append(f"{target} has {target.stat().st_size} bytes, not the recorded "
                            f"{entry.get('bytes')}")
        elif checksums and file_sha256(target) != entry.get("sha256"):
            problems.append(f"{target} does not match its recorded sha256")
    return problems


def _run_files(path: Path) -> dict[str, dict[str, object]]:
    """Checksum entries of a run folder's files (all but log, checkpoint, metrics, hidden ones)."""
    entries = {}
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path)
        if item.is_file() and not any(p.startswith(".") for p in rel.parts) \
                and rel.as_posix() not in UNCHECKED_FILES:
            entries[rel.as_posix()] = file_entry(item)
    return entries


def write_image_grid(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], nrow: int,
                     path: Path) -> None:
    """Denormalize ``images`` (N, C, H, W), clamp to [0, 1], write a PNG grid to ``path`` atomically."""
    from torchvision.utils import save_image

    images = images.detach().cpu().float()
    if images.dim() != 4 or images.shape[1] != len(mean) or len(mean) != len(std):
        raise ValueError(
            f"images of shape {tuple(images.shape)} do not match {len(mean)} means and "
            f"{len(std)} stds; expected (N, C, H, W) with C of each"
        )
    shape = (1, len(mean), 1, 1)
    pixels = images * torch.tensor(list(std)).view(shape) + torch.tensor(list(mean)).view(shape)
    with atomic_target(Path(path), "wb") as handle:
        save_image(pixels.clamp(0, 1), handle, nrow=max(1, int(nrow)), format="png")


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
        atomic_torch_save({"state": state, "step": int(step), "threads": torch.get_num_threads()},
                          self.path / CHECKPOINT_FILE)

    def load_checkpoint(self) -> tuple[dict, int] | None:
        """The latest ``(state, step)``, or ``None``; an unreadable checkpoint is warned about."""
        path = self.path / CHECKPOINT_FILE
        if not path.is_file():
            return None
        try:
            saved = _load_tensors(path)
            state, step = saved["state"], int(saved["step"])
            threads = saved.get("threads")  # absent in checkpoints written before it was kept
        except (RunError, KeyError, TypeError, ValueError, AttributeError) as error:
            message = f"ignoring the unreadable checkpoint {path} and starting over: {error}"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.log(message)
            return None
        self.resumed_from = step
        self.log(f"resuming from the checkpoint at step {step}")
        if threads is not None and int(threads) != torch.get_num_threads():
            self.log(f"the checkpoint was written with {int(threads)} CPU threads and this process "
                     f"uses {torch.get_num_threads()}: the result is reproducible to float "
                     "rounding, not bitwise (resume with torch.set_num_threads("
                     f"{int(threads)}) for a bitwise result)")
        return state, step

    def save_image_grid(
        self, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], nrow: int,
        name: str = "grid.png",
    ) -> None:
        """Denormalize ``images`` (N, C, H, W), clamp to [0, 1], save a PNG grid atomically."""
        write_image_grid(images, mean, std, nrow, self.path / name)

    def add_timing(self, key: str, seconds: float) -> None:
        """Add ``seconds`` under ``key`` in ``timings.json`` (summed when added again)."""
        self.timings[key] = self.timings.get(key, 0.0) + float(seconds)


