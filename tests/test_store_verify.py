"""Store verification: checksums in metrics.json, refused folders, recompute and quarantine, legacy
runs and sealing, ``ptmdd runs check``/``list`` and unusable store folders."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import compute_run

from ptmdd_helpers.atomic import atomic_torch_save
from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.paths import PathError
from ptmdd_helpers.specs import spec_id
from ptmdd_helpers.store.runfiles import FILES_KEY, QUARANTINE_DIR, RunContext, RunError
from ptmdd_helpers.store.runstore import RunStore


@dataclass(frozen=True)
class ToySpec:
    """A small spec."""

    dataset: str
    lr: float
    steps: int


@dataclass(frozen=True)
class OtherSpec:
    """A spec of another kind."""

    dataset: str


TOY = ToySpec("mnist", 0.1, 3)


def _compute(calls: list | None = None, value: float = 1.0):
    """A compute function saving tensors and an image grid; ``calls`` counts its calls."""

    def compute(ctx: RunContext) -> dict:
        if calls is not None:
            calls.append(ctx.path)
        ctx.save_tensors({"w": torch.full((2, 3), value)})
        ctx.save_image_grid(torch.zeros(2, 1, 4, 4), (0.5,), (0.2,), nrow=2)
        ctx.log("working")
        return {"loss": value}

    return compute


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (to prove nothing changed)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _make_legacy(run_path: Path) -> dict:
    """Strip the checksums from a run's metrics.json, as stored before verification existed."""
    metrics = json.loads((run_path / "metrics.json").read_text())
    files = metrics.pop(FILES_KEY)
    (run_path / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return files


def test_a_completed_run_records_the_checksum_of_every_file_it_wrote(tmp_path):
    store = RunStore(tmp_path)
    run = compute_run(store, TOY, _compute())
    stored = json.loads((run.path / "metrics.json").read_text())
    files = stored[FILES_KEY]
    assert sorted(files) == ["grid.png", "provenance.json", "spec.json", "tensors.pt",
                             "timings.json"]  # not log.txt, the lock or a checkpoint
    for name, entry in files.items():
        data = (run.path / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert run.metrics == {"loss": 1.0} and run.files == files and not run.legacy
    assert store.verify(run.id) == [] and store.check_run(run.path).status == "verified"
    with pytest.raises(TypeError, match=FILES_KEY):
        compute_run(store, OtherSpec("x"), lambda ctx: {FILES_KEY: 1})
    assert not store.exists(OtherSpec("x"))


def test_a_hand_edited_spec_is_refused_naming_both_ids(tmp_path, capsys):
    store = RunStore(tmp_path)
    run = compute_run(store, TOY, _compute())
    spec = json.loads((run.path / "spec.json").read_text())
    spec["lr"] = 0.5
    (run.path / "spec.json").write_text(json.dumps(spec))
    edited = spec_id(spec)
    before = _snapshot(tmp_path)
    with pytest.raises(RunError, match="different spec") as refused:
        store.load(run.id)
    message = str(refused.value)
    assert run.id in message and edited in message and "restore the spec.json" in message
    with pytest.warns(RuntimeWarning, match=edited):
        assert store.get(TOY) is None
    assert not store.exists(TOY)
    assert main(["runs", "show", run.id, "--store", str(tmp_path)]) == 2
    assert edited in capsys.readouterr().err
    with pytest.raises(RunError, match="ptmdd runs check"):
        compute_run(store, TOY, _compute())
    assert _snapshot(tmp_path) == before


def test_a_run_missing_its_tensors_is_not_served_and_not_recomputed_unasked(tmp_path):
    store = RunStore(tmp_path)
    run = compute_run(store, TOY, _compute())
    (run.path / "tensors.pt").unlink()
    before = _snapshot(tmp_path)
    assert not store.exists(TOY)
    with pytest.warns(RuntimeWarning, match="tensors.pt is missing"):
        assert store.get(TOY) is None
    assert any("tensors.pt is missing" in p for p in store.verify(run.id))
    with pytest.raises(RunError, match="is missing"):
        store.load(run.id)
    calls: list = []
    with pytest.raises(RunError) as refused:
        compute_run(store, TOY, _compute(calls))
    message = str(refused.value)
    assert "ptmdd runs check" in message and "--recompute" in message
    assert "recompute=True" in message and QUARANTINE_DIR in message
    assert calls == [] and _snapshot(tmp_path) == before


def test_recompute_moves_the_failing_folder_to_quarantine_and_computes_again(tmp_path):
    store = RunStore(tmp_path)
    run = compute_run(store, TOY, _compute(value=1.0))
    (run.path / "tensors.pt").unlink()
    calls: list = []
    again = compute_run(store, TOY, _compute(calls, value=2.0), recompute=True)
    assert calls == [run.path] and store.verify(again.id) == []
    assert torch.equal(again.tensors()["w"], torch.full((2, 3), 2.0))
    moved = list((tmp_path / QUARANTINE_DIR).iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(f"{run.id}-")
    assert moved[0].name.endswith("Z")  # <id>-<UTC stamp>
    assert json.loads((moved[0] / "metrics.json").read_text())["loss"] == 1.0
    assert not (moved[0] / "tensors.pt").exists()
    log = (again.path / "log.txt").read_text()
    assert "failed verification" in log and str(moved[0]) in log
    assert [r.id for r in store.runs()] == [run.id]  # the quarantine is not listed
    recomputed_again: list = []
    compute_run(store, TOY, _compute(recomputed_again), recompute=True)
    assert recomputed_again == []  # a verified run is served, even with recompute


def test_a_changed_file_fails_the_checksum_and_is_not_loaded(tmp_path):
    store = RunStore(tmp_path)
    run = compute_run(store, TOY, _compute())
    target = run.path / "tensors.pt"
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    assert store.exists(TOY)  # the cheap check sees the size only
    assert any("sha256" in p for p in store.verify(run.id))
    assert store.check_run(run.id).status == "failed"
    with pytest.raises(RunError, match="sha256.*--recompute"):
        store.load(run.id).tensors()
    (run.path / "grid.png").write_bytes(b"short")
    assert not store.exists(TOY)


def test_a_legacy_run_is_served_listed_as_legacy_and_sealed(tmp_path):
    store = RunStore(tmp_path)
    run = compute_run(store, TOY, _compute())
    original = _make_legacy(run.path)
    served = store.get(TOY)
    assert served is not None and served.legacy and served.metrics == {"loss": 1.0}
    check = store.check_run(run.id)
    assert check.status == "legacy" and check.servable and "--seal" in check.fix
    assert store.verify(run.id) and "no checksums" in store.verify(run.id)[0]
    sealed = store.seal(run.id)
    assert sealed.status == "verified" and store.verify(run.id) == []
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics[FILES_KEY] == original and metrics["loss"] == 1.0
    assert store.seal(run.id).status == "verified"  # sealing twice changes nothing


def test_sealing_refuses_a_tensor_file_that_does_not_load(tmp_path):
    store = RunStore(tmp_path)
    run = compute_run(store, TOY, _compute())
    _make_legacy(run.path)
    (run.path / "tensors.pt").write_bytes(b"not a torch file")
    text = (run.path / "metrics.json").read_text()
    with pytest.raises(RunError, match="cannot seal.*weights_only=True.*--recompute"):
        store.seal(run.id)
    assert (run.path / "metrics.json").read_text() == text
    assert store.check_run(run.id, seal=True).status == "failed"


def test_runs_check_prints_problems_and_exits_by_verdict(tmp_path, capsys):
    store = RunStore(tmp_path)
    good = compute_run(store, TOY, _compute())
    legacy = compute_run(store, OtherSpec("a"), _compute())
    bad = compute_run(store, ToySpec("b", 0.2, 1), _compute())
    _make_legacy(legacy.path)
    (bad.path / "tensors.pt").unlink()
    args = ["runs", "check", "--store", str(tmp_path)]
    assert main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[-1].endswith("1 verified, 1 legacy, 0 incomplete, 1 failed")
    assert out[0].startswith(f"{legacy.id}  legacy: ") and "--seal" in out[0]
    assert out[1].startswith(f"{bad.id}  failed: ") and "tensors.pt is missing" in out[1]
    assert main([*args, "--seal"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith(
        "2 verified, 0 legacy, 0 incomplete, 1 failed")
    compute_run(store, ToySpec("b", 0.2, 1), _compute(), recompute=True)
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"3 run folders in {tmp_path}: 3 verified, 0 legacy, 0 incomplete, 0 failed"]
    assert main(["runs", "check", good.id, "--store", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"{good.id}  verified: ")
    assert main(["runs", "check", "--store", str(tmp_path / "nowhere")]) == 2
    assert "no store at" in capsys.readouterr().err


def test_runs_list_skips_failing_runs_with_one_warning_line_each(tmp_path, capsys):
    store = RunStore(tmp_path)
    good = compute_run(store, TOY, _compute())
    bad = compute_run(store, OtherSpec("a"), _compute())
    (bad.path / "grid.png").unlink()
    assert main(["runs", "list", "--store", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()] == [good.id]
    warning_lines = captured.err.splitlines()
    assert len(warning_lines) == 1 and warning_lines[0].startswith("ptmdd runs: warning: ")
    assert bad.id in warning_lines[0] and "grid.png is missing" in warning_lines[0]


def test_runs_list_on_a_missing_store_names_the_options(tmp_path, capsys):
    missing = tmp_path / "no-store"
    assert main(["runs", "list", "--store", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"no store at {missing}" in err and "--store" in err and "$PTMDD_RUNS" in err
    assert not missing.exists()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(PathError, match="is a file"):
        RunStore(tmp_path / "a-file")


def _deny(monkeypatch, denied: Path, mode: int) -> None:
    """Make ``os.access`` report that ``mode`` is not granted on ``denied`` (tests run as root)."""
    real = os.access

    def access(path, wanted, *args, **kwargs):
        if Path(path) == denied and wanted & mode:
            return False
        return real(path, wanted, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_an_unreadable_store_is_a_run_error_naming_the_fix(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "store")
    run = compute_run(store, TOY, _compute())
    _deny(monkeypatch, store.root, os.R_OK)
    for attempt in (lambda: store.get(TOY), lambda: store.exists(TOY), store.runs,
                    lambda: store.load(run.id), store.check,
                    lambda: compute_run(store, OtherSpec("n"), _compute())):
        with pytest.raises(RunError, match="cannot read the run store .*chmod u\\+rx") as error:
            attempt()
        assert str(store.root) in str(error.value) and "$PTMDD_RUNS" in str(error.value)
    assert not store.path(OtherSpec("n")).exists()


def test_a_read_only_store_refuses_a_new_run_before_creating_anything(tmp_path, monkeypatch):
    parent = tmp_path / "parent"
    parent.mkdir()
    _deny(monkeypatch, parent, os.W_OK)
    calls: list = []
    with pytest.raises(RunError, match="cannot write to .*permission denied") as error:
        compute_run(RunStore(parent / "store"), TOY, _compute(calls))
    assert str(parent) in str(error.value) and "--store" in str(error.value)
    assert calls == [] and list(parent.iterdir()) == []
    monkeypatch.undo()
    store = RunStore(tmp_path / "existing")
    store.root.mkdir()
    _deny(monkeypatch, store.root, os.W_OK)
    with pytest.raises(RunError, match="chmod u\\+w"):
        compute_run(store, TOY, _compute(calls))
    assert calls == [] and list(store.root.iterdir()) == []


def test_resuming_under_another_thread_count_is_logged(tmp_path):
    ctx = RunContext(tmp_path, TOY)
    ctx.save_checkpoint({"x": torch.ones(2)}, 3)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["threads"] == torch.get_num_threads() and saved["step"] == 3
    state, step = ctx.load_checkpoint()
    assert step == 3 and torch.equal(state["x"], torch.ones(2))
    assert "threads" not in (tmp_path / "log.txt").read_text()
    other = torch.get_num_threads() + 3
    atomic_torch_save({"state": {"x": torch.ones(2)}, "step": 4, "threads": other},
                      tmp_path / "checkpoint.pt")
    assert RunContext(tmp_path, TOY).load_checkpoint()[1] == 4
    last = (tmp_path / "log.txt").read_text().splitlines()[-1]
    assert f"written with {other} CPU threads" in last
    assert "reproducible to float rounding, not bitwise" in last
    atomic_torch_save({"state": {"x": torch.ones(2)}, "step": 5}, tmp_path / "checkpoint.pt")
    lines = len((tmp_path / "log.txt").read_text().splitlines())
    assert RunContext(tmp_path, TOY).load_checkpoint()[1] == 5  # an old checkpoint still loads
    assert len((tmp_path / "log.txt").read_text().splitlines()) == lines + 1
