"""Iteration snapshots: a distillation to N iterations stores its set after k < N iterations as the
run of the same spec with k iterations (the run id and the tensors that a k-iteration run computes),
from the Python API, the command line (--snapshots) and a profile (distill.snapshots)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from ptmdd_helpers import study
from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.distill import make_spec
from ptmdd_helpers.specs import spec_id
from ptmdd_helpers.store.runs import Workspace, distill_run
from ptmdd_helpers.store.runstore import RunStore

SETTINGS = {"model": "ConvNetW32", "batch_real": 16}


def _workspace(root, snapshots=(), checkpoint_every=50) -> Workspace:
    return Workspace(RunStore(root), progress=False, device="cpu", snapshots=snapshots,
                     checkpoint_every=checkpoint_every)


def _same_run(a, b) -> None:
    assert a.id == b.id
    assert a.tensors().keys() == b.tensors().keys()
    for name, tensor in b.tensors().items():
        assert torch.equal(a.tensors()[name], tensor), name
    assert a.metrics["iterations"] == b.metrics["iterations"]
    assert a.metrics["loss_history"] == b.metrics["loss_history"]


@pytest.mark.parametrize("method, iterations, counts", [
    ("DM", 12, (3, 10)), ("DC", 5, (2,)), ("DSA", 5, (4,)),
])
def test_a_snapshot_is_the_run_of_k_iterations(tmp_path, method, iterations, counts):
    spec = make_spec("Digits", method, 1, iterations=iterations, **SETTINGS)
    workspace = _workspace(tmp_path / "with-snapshots", snapshots=(*counts, iterations + 5))
    final = distill_run(spec, workspace)
    assert final.metrics["iterations"] == iterations
    for k in counts:
        alone = make_spec("Digits", method, 1, iterations=k, **SETTINGS)
        snapshot = workspace.store.get(alone)
        assert snapshot is not None and snapshot.id == spec_id(alone)
        _same_run(snapshot, distill_run(alone, _workspace(tmp_path / f"alone-{k}")))
    # a count at or past the run's own iterations records nothing (the run is that set)
    assert len(workspace.store.runs("distill")) == 1 + len(counts)


def test_a_stored_snapshot_is_kept_and_an_interrupted_run_resumes_to_the_same_sets(
        tmp_path, interrupt_once):
    spec = make_spec("Digits", "DM", 1, iterations=8, **SETTINGS)
    workspace = _workspace(tmp_path / "store", snapshots=(3, 6), checkpoint_every=4)
    stored = distill_run(dataclasses.replace(spec, iterations=3), workspace)
    stamp = (stored.path / "metrics.json").stat().st_mtime_ns
    seen = interrupt_once("DM")  # iteration 5 raises KeyboardInterrupt, once
    with pytest.raises(KeyboardInterrupt):
        distill_run(spec, workspace)
    assert workspace.store.get(dataclasses.replace(spec, iterations=6)) is None
    resumed = distill_run(spec, workspace)
    assert seen == [0, 1, 2, 3, 4, 5, 4, 5, 6, 7]  # resumed from the checkpoint after iteration 4
    reference = _workspace(tmp_path / "reference", snapshots=(3, 6))
    _same_run(resumed, distill_run(spec, reference))
    for k in (3, 6):
        short = dataclasses.replace(spec, iterations=k)
        _same_run(workspace.store.get(short), reference.store.get(short))
    assert (stored.path / "metrics.json").stat().st_mtime_ns == stamp  # served, not rewritten


def test_the_command_line_prints_each_snapshot_and_refuses_one_past_the_run(tmp_path, capsys):
    common = ["distill", "--dataset", "Digits", "--method", "DM", "--ipc", "1", "--iterations",
              "6", "--model", "ConvNetW32", "--batch-real", "16", "--no-eval", "--quiet",
              "--store", str(tmp_path / "store"), "--device", "cpu"]
    assert main([*common, "--snapshots", "6"]) == 2
    error = capsys.readouterr().err
    assert "--snapshots 6: each snapshot is an iteration count from 1 to 5" in error
    assert not (tmp_path / "store").exists()  # nothing written
    assert main([*common, "--snapshots", "2,4"]) == 0
    out = capsys.readouterr().out
    for k in (2, 4):
        expected = spec_id(make_spec("Digits", "DM", 1, iterations=k, **SETTINGS))
        assert f"snapshot at {k} iterations: {expected}" in out


PROFILE = {
    "shared": {
        "target": "Digits", "other": "MNIST5k8", "device": "cpu", "executor": "local",
        "workers": 1, "seeds": [0], "ipcs": [1], "alpha": 10,
        "distill": {"model": "ConvNetW32", "batch_real": 16, "DM": {"iterations": 4},
                    "snapshots": [2]},
        "pool": {"arch": "ConvNetW32", "n_models": 1, "epoch": "final", "keep_epochs": None,
                 "recipe": {"epochs": 1, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.005,
                            "batch_size": 256, "milestones": [50, 100]}},
        "eval": {"archs": None, "n_nets": 1, "epochs": 2},
    },
    "05_alpha": {"methods": ["DM"], "alphas": [0, 10], "ptm_only": False},
}


def test_a_profile_records_the_snapshots_of_every_distillation_it_computes(tmp_path):
    path = tmp_path / "snapshots.yaml"
    path.write_text(yaml.safe_dump(PROFILE))
    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}"]
    params = study.load_profile(path, roots)["05_alpha"]
    assert study.workspace(params).snapshots == (2,)
    grid = study.build_grid("05_alpha", params)
    assert all(spec.iterations == 4 for spec in grid.distillations)  # not a spec setting
    study.compute(grid, verbose=False)
    store = study.workspace(params).store
    for spec in grid.distillations:
        snapshot = store.get(dataclasses.replace(spec, iterations=2))
        assert snapshot is not None and snapshot.metrics["iterations"] == 2
    with pytest.raises(study.StudyError, match="distill.snapshots.0"):
        study.load_profile(path, [*roots, "distill.snapshots=[0]"])


def test_00_evaluates_each_snapshot_and_the_study_distills_each_seed_once(tmp_path):
    profile = {**PROFILE, "00_preliminary": {
        "methods": ["DM"], "references": {"random_real": False, "whole": None}}}
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump(profile))
    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}"]
    params = study.load_profile(path, roots)["00_preliminary"]
    grid = study.build_grid("00_preliminary", params)
    # baseline and +CLoM evaluated after 2 and 4 iterations; only the 4-iteration runs distil
    assert sorted((dict(i.labels)["condition"], dict(i.labels)["iterations"],
                   dict(i.labels)["final"]) for i in grid.items) == [
        ("+CLoM", 2, False), ("+CLoM", 4, True), ("baseline", 2, False), ("baseline", 4, True)]
    assert [spec.iterations for spec in grid.distillations] == [4, 4]
    assert {k.iterations: v.iterations for k, v in grid.snapshots.items()} == {2: 4}
    tasks = study.pending_tasks([grid], study.workspace(params))
    by_key = {t.key: t for t in tasks}
    assert sum(t.kind == "distill" for t in tasks) == 2
    for task in tasks:
        if task.kind == "evaluation" and task.spec.subject.iterations == 2:
            (source,) = task.after  # waits for the 4-iteration run that stores its set
            assert by_key[source].spec == dataclasses.replace(task.spec.subject, iterations=4)
    results = study.compute(grid, verbose=False)
    assert sum(key.startswith("distill") for key in results) == 2
    assert {status for status, _ in results.values()} == {"computed"}
    frame = study.result_frame(grid)
    assert sorted(set(zip(frame["condition"], frame["iterations"], strict=True))) == [
        ("+CLoM", 2), ("+CLoM", 4), ("baseline", 2), ("baseline", 4)]
    # four sets (two runs, two snapshots), named by their run ids
    assert set(frame["subject_id"]) == {spec_id(spec) for spec in grid.distilled}
    assert len(grid.distilled) == 4
