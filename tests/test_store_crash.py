"""Crash-point injection: a tiny DM distillation is killed at every atomic write of its
checkpointing and completion, before and after the write lands; the next attempt must resume to
the uninterrupted result, bitwise, and no half-written run may ever be served as complete."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch

from ptmdd_helpers.distill import make_spec
from ptmdd_helpers.store.runfiles import RunError
from ptmdd_helpers.store.runs import Workspace, distill_run
from ptmdd_helpers.store.runstore import RunStore

SPEC = make_spec("Digits", "DM", 1, iterations=5, model="ConvNetW32", batch_real=16)


class Crash(BaseException):
    """The injected failure (a BaseException, like the KeyboardInterrupt of a killed run)."""


def _workspace(root) -> Workspace:
    return Workspace(RunStore(root), progress=False, checkpoint_every=2, device="cpu")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run and the names of its atomic writes, in order."""
    written: list[str] = []
    real = os.replace

    def counting(src, dst, *args, **kwargs):
        written.append(os.path.basename(dst))
        return real(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", counting)
        run = distill_run(SPEC, _workspace(tmp_path_factory.mktemp("reference")))
    return run, written


def _crash_at(k: int, after: bool):
    """An ``os.replace`` that raises :class:`Crash` at its ``k``-th call (1-based), before the
    file lands (leaving a stale temporary file, as a killed process does) or just after it."""
    real, seen = os.replace, []

    def replace(src, dst, *args, **kwargs):
        seen.append(dst)
        if len(seen) == k and not after:
            shutil.copy(src, f"{src}.killed.tmp")  # hidden, like the writer's own temporary
            raise Crash(f"killed before write {k} ({os.path.basename(dst)})")
        result = real(src, dst, *args, **kwargs)
        if len(seen) == k:
            raise Crash(f"killed after write {k} ({os.path.basename(dst)})")
        return result

    return replace


def test_the_reference_writes_checkpoints_and_completion_files(reference):
    run, written = reference
    assert written == ["spec.json", "checkpoint.pt", "checkpoint.pt", "tensors.pt", "grid.png",
                       "provenance.json", "timings.json", "metrics.json"]
    assert run.metrics["iterations"] == 5 and run.files


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_run_killed_at_any_write_resumes_to_the_uninterrupted_result(
    reference, tmp_path, monkeypatch, after,
):
    straight, written = reference
    images = straight.tensors()["images"]
    for k in range(1, len(written) + 1):
        workspace = _workspace(tmp_path / f"write-{k}")
        store = workspace.store
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", _crash_at(k, after))
            with pytest.raises(Crash):
                distill_run(SPEC, workspace)
        landed_metrics = after and written[k - 1] == "metrics.json"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a half-written run is neither served nor warned
            assert store.exists(SPEC) is landed_metrics, (k, after)
            assert (store.get(SPEC) is not None) is landed_metrics, (k, after)
            assert len(store.runs()) == int(landed_metrics), (k, after)
        if not landed_metrics:
            with pytest.raises(RunError, match="incomplete|not a run directory"):
                store.load(store.path(SPEC))
        resumed = distill_run(SPEC, workspace)
        assert store.verify(resumed.id) == [], (k, after)
        assert torch.equal(resumed.tensors()["images"], images), (k, after)
        assert torch.equal(resumed.tensors()["labels"], straight.tensors()["labels"])
        assert resumed.metrics["loss_history"] == straight.metrics["loss_history"], (k, after)
        assert resumed.files.keys() == straight.files.keys()
        for name in ("tensors.pt", "spec.json"):
            assert resumed.files[name] == straight.files[name], (k, after, name)
        assert not list(resumed.path.glob(".*.tmp")), (k, after)
