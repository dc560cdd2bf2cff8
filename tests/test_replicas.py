"""Replicate-batched distillation: a batch of replicates (seeds and guidance points of one shape)
computes what each replicate computes alone, is stored run by run, resumes after kill -9, and a
replicate that diverges stops alone.

Tolerance: after a few iterations a replicate's images in the batch differ from those of its run
alone by at most 2e-3 of how far the run moved them from its initial set (seen after 3 iterations:
DM 2e-6, DC and DSA 3e-4 of a change of about 1), its losses by a relative 1e-3: the stacked
kernels sum in another order, nothing else differs. A draw that was not the run's own would move
the images by the size of a step, i.e. of the change itself.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ptmdd_helpers.data.datasets import load_dataset
from ptmdd_helpers.distill import (
    DistillationDiverged,
    Replica,
    distill,
    initial_synthetic_set,
    make_spec,
    run_replicas,
)
from ptmdd_helpers.distill.spec import batch_key
from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools.guidance import Guidance, make_guidance
from ptmdd_helpers.pools.members import recipe_identity
from ptmdd_helpers.pools.pretrain import train_pool
from ptmdd_helpers.store.runs import Workspace, distill_run, distill_runs
from ptmdd_helpers.store.runstore import RunStore

SETTINGS = {"model": "ConvNetW32", "batch_real": 16, "init": "real"}
RECIPE = TrainRecipe(epochs=1)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    train_pool("Digits", ["ConvNetW32"], 1, RECIPE, root=root, progress=False)
    return root


def _clom(alpha: float):
    return make_guidance("clom", "Digits", ["ConvNetW32"], 1, 1, [alpha],
                         pool_recipe=recipe_identity(RECIPE))


def _replicates(method: str, iterations: int = 3, ipc: int = 1, **settings) -> list:
    """Seeds 0, 1, 2: the baseline, CLoM α 100 and CLoM α 10 (guidance points of one shape)."""
    base = make_spec("Digits", method, ipc, iterations=iterations, **{**SETTINGS, **settings})
    return [dataclasses.replace(base, seed=0),
            dataclasses.replace(base, seed=1, guidance=_clom(100.0)),
            dataclasses.replace(base, seed=2, guidance=_clom(10.0))]


def _close(batched: dict, alone: dict, spec) -> None:
    change = (alone["images"] - initial_synthetic_set(spec, load_dataset("Digits"))[0]).abs().max()
    assert change > 0.1
    assert (batched["images"] - alone["images"]).abs().max() <= 2e-3 * change
    assert torch.equal(batched["labels"], alone["labels"])
    assert batched["history"] == pytest.approx(alone["history"], rel=1e-3)


@pytest.mark.parametrize("method, settings", [
    ("DM", {}), ("DC", {}), ("DSA", {}),
    # the inner loop and classes of unequal sizes (Digits has 174-183 images per class); at IPC 2:
    # at IPC 1 with an outer loop, DC's own two exact paths alone (classes batched or one by one)
    # already differ by up to 3e-2 after 3 iterations (the cosine of near-zero gradient rows
    # amplifies rounding), so no batch could be held to 1e-4 there
    ("DC", {"ipc": 2, "outer_loop": 2, "inner_loop": 2, "batch_real": 256}),
    # BatchNorm: each replicate's running statistics from its own batch, then frozen (without an
    # inner loop: training BatchNorm on Digits' 1×1 maps amplifies rounding, tests/test_ensemble.py)
    ("DC", {"model": "ConvNetBN"}),
])
def test_a_batch_of_replicates_computes_what_each_computes_alone(pool, method, settings):
    data = load_dataset("Digits")
    specs = _replicates(method, **settings)
    assert len({batch_key(spec) for spec in specs}) == 1
    guidances = [Guidance(s.guidance, data, pool_root=pool) if s.guidance else None for s in specs]
    batch = run_replicas([Replica(s, g) for s, g in zip(specs, guidances, strict=True)], data,
                         progress=False)
    for replica, spec, guidance in zip(batch, specs, guidances, strict=True):
        assert replica.error is None
        _close(replica.result, distill(spec, data, guidance=guidance, progress=False,
                                       pool_root=pool), spec)


def test_the_store_keeps_each_replicate_under_its_own_run_id(tmp_path, pool):
    specs = _replicates("DM", iterations=4)
    batched = Workspace(RunStore(tmp_path / "batched"), pool_root=pool, progress=False)
    outcomes = distill_runs(specs, batched)
    assert [status for status, _ in outcomes] == ["computed"] * 3
    alone = Workspace(RunStore(tmp_path / "alone"), pool_root=pool, progress=False)
    for spec, (_, run) in zip(specs, outcomes, strict=True):
        reference = distill_run(spec, alone)
        assert run.id == reference.id
        _close({**run.tensors(), "history": run.metrics["loss_history"]},
               {**reference.tensors(), "history": reference.metrics["loss_history"]}, spec)
    assert [status for status, _ in distill_runs(specs, batched)] == ["found"] * 3  # asked twice


def test_specs_of_different_shapes_or_only_iterations_apart_are_refused(tmp_path):
    ws = Workspace(RunStore(tmp_path / "store"), progress=False)
    dm = make_spec("Digits", "DM", 1, iterations=2, **SETTINGS)
    with pytest.raises(ValueError, match="batch_key"):
        distill_runs([dm, dataclasses.replace(dm, ipc=2)], ws)
    with pytest.raises(ValueError, match="only in their iteration count"):
        distill_runs([dm, dataclasses.replace(dm, iterations=3)], ws)
    assert not (tmp_path / "store").exists()  # refused before anything was written


class _DivergingGuidance:
    """A guidance whose loss becomes NaN from its 4th use on."""

    def __init__(self) -> None:
        self.calls = 0

    def loss(self, images, labels, generator):
        self.calls += 1
        return images.sum() * (float("nan") if self.calls > 3 else 0.0)


def test_a_replicate_that_diverges_stops_alone():
    data = load_dataset("Digits")
    base = make_spec("Digits", "DM", 1, iterations=12, **SETTINGS)
    specs = [dataclasses.replace(base, seed=seed) for seed in range(3)]
    batch = run_replicas([Replica(specs[0]), Replica(specs[1], _DivergingGuidance()),
                          Replica(specs[2])], data, progress=False)
    assert isinstance(batch[1].error, DistillationDiverged) and batch[1].result is None
    assert "iteration 3" in str(batch[1].error)
    assert torch.isfinite(batch[1].error.images).all()  # the last good set is kept
    for index in (0, 2):
        assert batch[index].error is None
        _close(batch[index].result, distill(specs[index], data, progress=False), specs[index])


def test_a_diverged_replicate_keeps_its_last_good_set_in_the_store(tmp_path, pool):
    specs = _replicates("DM", iterations=4)
    specs[1] = dataclasses.replace(specs[1], guidance=_clom(1e38))  # α·L_PTM overflows
    ws = Workspace(RunStore(tmp_path / "store"), pool_root=pool, progress=False)
    outcomes = distill_runs(specs, ws)
    assert [status for status, _ in outcomes] == ["computed", "diverged", "computed"]
    assert "last_good.pt" in str(outcomes[1][1])
    assert ws.store.get(specs[1]) is None and ws.store.get(specs[0]) is not None


KILLED = textwrap.dedent("""
    import os, signal, sys, dataclasses
    from ptmdd_helpers.distill import make_spec
    from ptmdd_helpers.distill.methods import get_method
    from ptmdd_helpers.store.runs import Workspace, distill_runs
    method = get_method("DM")
    batch_iteration = method.batch_iteration
    kill = False
    def killed_at_five(states):
        if kill and states[0].iteration == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return batch_iteration(states)
    object.__setattr__(method, "batch_iteration", killed_at_five)
    base = make_spec("Digits", "DM", 1, iterations=8, model="ConvNetW32", batch_real=16)
    specs = [dataclasses.replace(base, seed=seed) for seed in range(3)]
    if sys.argv[2] == "kill":  # the uninterrupted reference first (one process start fewer)
        reference = Workspace(sys.argv[3], progress=False, checkpoint_every=4)
        print([status for status, _ in distill_runs(specs, reference)], flush=True)
        kill = True
    ws = Workspace(sys.argv[1], progress=False, checkpoint_every=4)
    print([status for status, _ in distill_runs(specs, ws)])
""")


def test_kill_9_mid_batch_then_resume_gives_the_same_tensors(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-c", KILLED, *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=300)

    # one process computes the uninterrupted reference, then is killed mid-batch; a fresh one
    # resumes: it starts from the killed run's checkpoint alone
    killed = run(tmp_path / "store", "kill", tmp_path / "reference")
    assert killed.returncode == -9, killed.stderr
    assert killed.stdout.strip() == "['computed', 'computed', 'computed']", killed.stderr
    resumed = run(tmp_path / "store", "resume")
    assert resumed.stdout.strip() == "['computed', 'computed', 'computed']", resumed.stderr
    stores = RunStore(tmp_path / "store"), RunStore(tmp_path / "reference")
    runs = [sorted(store.runs("distill"), key=lambda r: r.id) for store in stores]
    assert [r.id for r in runs[0]] == [r.id for r in runs[1]] and len(runs[0]) == 3
    for interrupted, uninterrupted in zip(*runs, strict=True):
        assert interrupted.metrics["loss_history"] == uninterrupted.metrics["loss_history"]
        for name, tensor in uninterrupted.tensors().items():
            assert torch.equal(interrupted.tensors()[name], tensor), name


def test_the_study_packs_ready_distillations_of_one_shape(tmp_path, monkeypatch):
    from ptmdd_helpers.store import runs
    from ptmdd_helpers.study.tasks import Task, run_local
    from ptmdd_helpers.study.workers import workspace_config

    sizes = []
    real_run_replicas = runs.run_replicas

    def recording(replicas, *args, **kwargs):
        sizes.append(len(replicas))
        return real_run_replicas(replicas, *args, **kwargs)

    monkeypatch.setattr(runs, "run_replicas", recording)
    dm = make_spec("Digits", "DM", 1, iterations=2, **SETTINGS)
    specs = [dataclasses.replace(dm, seed=seed) for seed in range(4)]
    specs += [dataclasses.replace(dm, seed=0, iterations=3),  # only iterations apart from specs[0]
              make_spec("Digits", "DC", 1, iterations=1, **SETTINGS)]  # another shape
    ws = Workspace(RunStore(tmp_path / "store"), progress=False)
    lines: list[str] = []
    results = run_local([Task("distill", spec) for spec in specs], workspace_config(ws), 1,
                        lines.append, replicas=3)
    assert sorted(status for status, _ in results.values()) == ["computed"] * 6
    assert sizes == [3, 2]  # seeds 0-2; then seed 3 with the 3-iteration seed 0; DC alone
    assert [line.split("]")[0] for line in lines] == [f"[{n}/6" for n in range(1, 7)]
    assert len(ws.store.runs("distill")) == 6


# --------------------------------------------------------------------------- evaluations together


def _evaluations(n_sets: int = 3):
    from ptmdd_helpers.distill import protocol_for
    from ptmdd_helpers.store.runs import EvaluationSpec, RealSubsetSpec

    protocol = protocol_for("DSA", epochs=3, batch_size=32)
    dm = make_spec("Digits", "DM", 2, iterations=2, **SETTINGS)
    subjects = [dataclasses.replace(dm, seed=seed) for seed in range(n_sets - 1)]
    subjects.append(RealSubsetSpec("Digits", 2, 7))  # a set of the same shape, another kind
    return [EvaluationSpec(subject, "ConvNetW32", 2, protocol) for subject in subjects]


def test_evaluations_of_many_sets_train_as_one_ensemble_and_are_stored_one_by_one(tmp_path):
    from ptmdd_helpers.store.evaluations import evaluation_run, evaluation_runs

    specs = _evaluations()
    together = Workspace(RunStore(tmp_path / "together"), progress=False)
    outcomes = evaluation_runs(specs, together, ensemble=True)
    assert [status for status, _ in outcomes] == ["computed"] * 3
    alone = Workspace(RunStore(tmp_path / "alone"), progress=False)
    for spec, (_, run) in zip(specs, outcomes, strict=True):
        reference = evaluation_run(spec, alone)  # the loop, one network after another
        assert run.id == reference.id
        rows, expected = run.metrics["rows"], reference.metrics["rows"]
        assert [(r["arch"], r["net"]) for r in rows] == [(r["arch"], r["net"]) for r in expected]
        # float32 ensemble against the loop: the same accuracies up to a near-tie (1 test image)
        assert [r["accuracy"] for r in rows] == pytest.approx(
            [r["accuracy"] for r in expected], abs=1.5 / len(load_dataset("Digits").test_labels))
    assert [status for status, _ in evaluation_runs(specs, together, ensemble=True)] == \
        ["found"] * 3


def test_the_study_packs_evaluations_of_one_shape_where_it_ensembles():
    from ptmdd_helpers.study.packing import pack
    from ptmdd_helpers.study.tasks import Task

    specs = _evaluations(4)
    other = dataclasses.replace(specs[0], n_nets=3)  # another shape
    tasks = [Task("evaluation", spec) for spec in [*specs, other]]
    assert pack(tasks[0], tasks[1:], size=1, sets=3) == tasks[:3]
    assert pack(tasks[0], tasks[1:], size=8, sets=1) == tasks[:1]  # a CPU: no ensemble packing
    assert pack(tasks[4], tasks[:4], size=8, sets=8) == tasks[4:]
