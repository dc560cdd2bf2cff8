"""The run store: spec ids, compute-once, resume, locking, load errors, the tidy frame."""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from conftest import compute_run

import ptmdd_helpers
from ptmdd_helpers.atomic import atomic_torch_save, atomic_write_text
from ptmdd_helpers.specs import added_field, canonical_json, spec_fields, spec_id
from ptmdd_helpers.store.runfiles import RunContext, RunError
from ptmdd_helpers.store.runstore import RunStore


@dataclass(frozen=True)
class InnerSpec:
    """A nested spec."""

    name: str
    weights: tuple[float, ...] = (1.0, 2.5)


@dataclass(frozen=True)
class ToySpec:
    """A small spec with every supported kind of field."""

    dataset: str
    lr: float
    steps: int
    inner: InnerSpec | None = None
    out: Path = Path("a/b")


@dataclass(frozen=True)
class OtherSpec:
    """A spec of another kind."""

    dataset: str


TOY = ToySpec("mnist", 0.1, 3, InnerSpec("x"))


# --------------------------------------------------------------------------- spec ids


def test_canonical_json_of_a_known_spec():
    expected = (
        '{"__kind__":"ToySpec","dataset":"mnist","inner":{"__kind__":"InnerSpec","name":"x",'
        '"weights":[1.0,2.5]},"lr":0.1,"out":"a/b","steps":3}'
    )
    assert canonical_json(TOY) == expected
    assert canonical_json(json.loads(expected)) == expected  # stored data re-encodes the same


def test_spec_id_is_stable_and_sensitive():
    same = ToySpec(steps=3, lr=0.1, dataset="mnist", inner=InnerSpec(weights=(1.0, 2.5), name="x"))
    assert spec_id(same) == spec_id(TOY)
    assert spec_id(TOY).startswith("toy-") and len(spec_id(TOY)) == len("toy-") + 16
    assert spec_id(replace(TOY, steps=4)) != spec_id(TOY)
    assert spec_id(replace(TOY, inner=InnerSpec("y"))) != spec_id(TOY)
    assert spec_id(replace(TOY, inner=InnerSpec("x", (1.0, 2.0)))) != spec_id(TOY)
    assert spec_id(replace(TOY, inner=None)) != spec_id(TOY)
    assert spec_id(replace(TOY, lr=1)) == spec_id(replace(TOY, lr=1.0))  # float fields
    assert spec_id(OtherSpec("mnist")).startswith("other-")
    assert spec_id(json.loads(canonical_json(TOY))) == spec_id(TOY)


def test_unsupported_field_types_raise_type_error():
    with pytest.raises(TypeError, match="set"):
        canonical_json(ToySpec("mnist", 0.1, 3, out={1, 2}))
    with pytest.raises(TypeError, match="dataclass"):
        spec_id({"dataset": "mnist"})


def test_spec_fields_flattens_nested_specs():
    fields = spec_fields(TOY)
    assert fields == {
        "dataset": "mnist", "lr": 0.1, "steps": 3, "inner.__kind__": "InnerSpec",
        "inner.name": "x", "inner.weights": (1.0, 2.5), "out": "a/b",
    }
    assert spec_fields(json.loads(canonical_json(TOY))) == fields
    assert spec_fields(replace(TOY, inner=None))["inner"] is None


# --------------------------------------------------------------------------- compute once


def test_a_run_is_computed_once(tmp_path):
    store = RunStore(tmp_path)
    calls = []

    def compute(ctx: RunContext) -> dict:
        calls.append(1)
        ctx.save_tensors({"w": torch.arange(6.0).view(2, 3)})
        ctx.log("hello")
        return {"loss": 0.25, "history": [1.0, 0.5]}

    assert not store.exists(TOY) and store.get(TOY) is None
    first = compute_run(store, TOY, compute)
    second = compute_run(store, TOY, compute)
    assert len(calls) == 1
    assert store.exists(TOY)
    assert first.id == second.id == spec_id(TOY) and first.path == tmp_path / first.id
    assert second.metrics == first.metrics == {"loss": 0.25, "history": [1.0, 0.5]}
    assert torch.equal(second.tensors()["w"], first.tensors()["w"])
    assert second.spec == json.loads(canonical_json(TOY))
    assert store.load(first.id).metrics == first.metrics
    assert store.load(first.path).id == first.id
    assert [run.id for run in store.runs()] == [first.id]
    assert "hello" in (first.path / "log.txt").read_text()
    assert not list(first.path.glob(".*.tmp"))


def test_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PTMDD_RUNS", str(tmp_path / "env-root"))
    assert RunStore().root == tmp_path / "env-root"
    monkeypatch.delenv("PTMDD_RUNS")
    monkeypatch.chdir(tmp_path)  # outside the project: the default is under the working directory
    assert RunStore().root == tmp_path / "runs" / "store"


# --------------------------------------------------------------------------- resume


def _stepper(starts: list[int], fail_at: int | None):
    """A compute function looping steps 0..9, checkpointing every 2 steps, failing once."""

    def compute(ctx: RunContext) -> dict:
        restored = ctx.load_checkpoint()
        if restored is None:
            x, start = torch.zeros(4), 0
        else:
            state, start = restored
            x = state["x"]
            assert state["meta"] == {"done": start, "note": "ok"}
        starts.append(start)
        for step in range(start, 10):
            if step == fail_at and len(starts) == 1:
                raise RuntimeError("interrupted at step 5")
            x = x * 1.5 + step + torch.arange(4.0)
            if (step + 1) % 2 == 0:
                ctx.save_checkpoint({"x": x, "meta": {"done": step + 1, "note": "ok"}}, step + 1)
        ctx.save_tensors({"x": x})
        return {"sum": float(x.sum())}

    return compute


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    store = RunStore(tmp_path / "a")
    starts: list[int] = []
    compute = _stepper(starts, fail_at=5)
    with pytest.raises(RuntimeError, match="step 5"):
        compute_run(store, TOY, compute)
    path = store.path(TOY)
    assert (path / "checkpoint.pt").is_file() and (path / "spec.json").is_file()
    assert not (path / "metrics.json").exists()
    assert not store.exists(TOY) and store.get(TOY) is None and store.runs() == []
    with pytest.raises(RunError, match="incomplete"):
        store.load(spec_id(TOY))

    resumed = compute_run(store, TOY, compute)
    assert starts == [0, 4]
    assert not (path / "checkpoint.pt").exists()
    assert resumed.provenance["resumed_from_step"] == 4

    reference_starts: list[int] = []
    reference = compute_run(RunStore(tmp_path / "b"), TOY, _stepper(reference_starts, None))
    assert reference_starts == [0]
    assert torch.equal(resumed.tensors()["x"], reference.tensors()["x"])
    assert resumed.metrics == reference.metrics


def test_a_folder_holding_another_spec_is_refused(tmp_path):
    store = RunStore(tmp_path)
    path = store.path(TOY)
    path.mkdir(parents=True)
    (path / "spec.json").write_text(canonical_json(OtherSpec("x")))
    with pytest.raises(RunError, match="different spec"):
        compute_run(store, TOY, lambda ctx: {})


# --------------------------------------------------------------------------- concurrency


def _slow_worker(root: str, marker: str, queue) -> None:
    """Ask for TOY's run in a fresh process; compute appends to ``marker`` and sleeps 1 s."""

    def compute(ctx: RunContext) -> dict:
        with open(marker, "a") as handle:
            handle.write("computed\n")
        time.sleep(1.0)
        return {"value": 42}

    run = compute_run(RunStore(root), TOY, compute)
    queue.put((run.id, run.metrics, spec_id(TOY)))


def test_two_processes_compute_a_run_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    marker = tmp_path / "calls.txt"
    workers = [
        context.Process(target=_slow_worker, args=(str(tmp_path / "store"), str(marker), queue))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert marker.read_text().splitlines() == ["computed"]
    assert results[0] == results[1] == (spec_id(TOY), {"value": 42}, spec_id(TOY))


# --------------------------------------------------------------------------- load errors


def test_load_errors_name_the_path(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(RunError, match="toy-0000000000000000") as missing:
        store.load("toy-0000000000000000")
    assert str(tmp_path) in str(missing.value)

    bare = tmp_path / "not-a-run"
    bare.mkdir()
    with pytest.raises(RunError, match="no spec.json") as no_spec:
        store.load(bare)
    assert str(bare) in str(no_spec.value)

    run = compute_run(store, TOY, lambda ctx: {"ok": 1})
    (run.path / "metrics.json").write_text("{not json")
    with pytest.raises(RunError, match="cannot read") as corrupt:
        store.load(run.id)
    assert str(run.path / "metrics.json") in str(corrupt.value)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert store.runs() == []

    (run.path / "spec.json").write_text('{"dataset": "mnist"}')
    (run.path / "metrics.json").write_text("{}")
    with pytest.raises(RunError, match="not a spec"):
        store.load(run.path)
    with pytest.raises(RunError, match="missing"):
        compute_run(store, OtherSpec("m"), lambda ctx: {}).tensors("absent")


# --------------------------------------------------------------------------- the frame


def test_frame_has_one_row_per_entry_and_spec_columns(tmp_path):
    store = RunStore(tmp_path)
    a, b = ToySpec("a", 0.1, 1, InnerSpec("x")), ToySpec("b", 0.2, 2, InnerSpec("y"))
    compute_run(store, a, lambda ctx: {"rows": [{"net": 0, "acc": 0.5}, {"net": 1, "acc": 0.6}]})
    compute_run(store, b, lambda ctx: {"rows": [{"net": i, "acc": 0.1 * i} for i in range(3)]})
    compute_run(store, OtherSpec("a"), lambda ctx: {"loss": 1.5, "summary": {"mean": 0.3},
                                                      "history": [1, 2]})

    frame = store.frame("toy")
    assert len(frame) == 5
    assert {"run_id", "kind", "dataset", "lr", "steps", "inner.name", "inner.weights", "out",
            "net", "acc"} <= set(frame.columns)
    assert set(frame["kind"]) == {"toy"}
    assert sorted(frame["dataset"]) == ["a", "a", "b", "b", "b"]
    assert frame.loc[0, "inner.weights"] == (1.0, 2.5)

    assert len(store.frame("toy", dataset="a")) == 2
    assert len(store.frame("toy", dataset=["a", "b"], net=0)) == 2
    assert len(store.frame("toy", **{"inner.name": "y", "net": (1, 2)})) == 2
    assert len(store.frame("toy", steps=3)) == 0
    with pytest.raises(ValueError, match="no column"):
        store.frame("toy", nope=1)

    other = store.frame("other")
    assert len(other) == 1 and other.loc[0, "loss"] == 1.5 and other.loc[0, "summary.mean"] == 0.3
    assert "history" not in other.columns
    assert len(store.frame()) == 6
    assert RunStore(tmp_path / "empty").frame("toy", dataset="a").empty


# --------------------------------------------------------------------------- provenance, images


def test_provenance_timings_and_image_grid(tmp_path):
    from PIL import Image

    store = RunStore(tmp_path)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)

    def compute(ctx: RunContext) -> dict:
        images = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        ctx.save_image_grid(images, mean, std, nrow=3)
        ctx.add_timing("distill_seconds", 1.5)
        ctx.add_timing("distill_seconds", 0.5)
        return {"ok": True}

    run = compute_run(store, TOY, compute, device="cpu")
    info = json.loads((run.path / "provenance.json").read_text())
    assert info["torch_version"] == torch.__version__
    assert info["package_version"] == ptmdd_helpers.__version__
    assert info["device"] == "cpu" and info["hostname"] and info["finished_utc"]
    assert "git_commit" in info and info == run.provenance
    assert run.timings["distill_seconds"] == 2.0 and run.timings["compute_seconds"] >= 0
    with Image.open(run.path / "grid.png") as grid:
        grid.load()
        assert grid.format == "PNG" and grid.size == (3 * 10 + 2, 2 * 10 + 2)
    with pytest.raises(ValueError, match="do not match"):
        RunContext(tmp_path, TOY).save_image_grid(torch.zeros(2, 1, 4, 4), mean, std, nrow=2)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_writes_leave_the_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "state.pt"
    atomic_torch_save({"w": torch.ones(2)}, target)
    with pytest.raises(Exception):  # noqa: B017 - any pickling error will do
        atomic_torch_save({"f": lambda: None}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))
    atomic_write_text(tmp_path / "note.txt", "héllo")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "héllo"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["note.txt", "state.pt", "sub"]


@dataclass(frozen=True)
class ToySpecLater:
    """``ToySpec``'s name and fields, after a field was added with ``added_field``."""

    dataset: str
    lr: float = 0.1
    precision: str = added_field("fp32")


def test_an_added_field_is_left_out_of_the_json_and_the_id_at_its_default():
    assert canonical_json(ToySpecLater("digits")) == \
        '{"__kind__":"ToySpecLater","dataset":"digits","lr":0.1}'
    bf16 = ToySpecLater("digits", precision="bf16")
    assert canonical_json(bf16) == \
        '{"__kind__":"ToySpecLater","dataset":"digits","lr":0.1,"precision":"bf16"}'
    assert spec_id(ToySpecLater("digits")) != spec_id(bf16)
