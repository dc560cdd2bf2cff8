"""Common random numbers: conditions at one seed share every random stream but their own.

All on the offline Digits set, with short runs; every assertion compares real tensors.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.data.datasets import load_dataset
from ptmdd_helpers.distill import distill, initial_synthetic_set, make_spec, protocol_for
from ptmdd_helpers.distill.engine import DistillState
from ptmdd_helpers.evaluation.evaluate import _network
from ptmdd_helpers.evaluation.training_sets import evaluation_seed_parts, network_seed_parts
from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools.guidance import Guidance, GuidanceSpec
from ptmdd_helpers.pools.members import PoolError, recipe_identity
from ptmdd_helpers.pools.pretrain import train_pool
from ptmdd_helpers.store import evaluations as evaluations_module
from ptmdd_helpers.store.evaluations import evaluation_run, training_set
from ptmdd_helpers.store.runs import EvaluationSpec, RealSubsetSpec, Workspace, distill_run, spec_from_dict
from ptmdd_helpers.store.runstore import RunStore

RECIPE = TrainRecipe(epochs=2)
POOL = recipe_identity(RECIPE)
FAST = {"model": "ConvNetW32", "batch_real": 16, "init": "real"}


@pytest.fixture(scope="module")
def pool_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    train_pool("Digits", ["ConvNetW32"], 2, RECIPE, root=root, progress=False)
    return root


def _guidance(**changes) -> GuidanceSpec:
    settings = {"kind": "clom", "source": "Digits", "archs": ("ConvNetW32",), "n_models": 1,
                "epoch": 2, "alphas": (10.0,), "pool_recipe": POOL}
    return GuidanceSpec(**{**settings, **changes})


def _run(spec, data, root):
    guidance = Guidance(spec.guidance, data, pool_root=root) if spec.guidance else None
    return distill(spec, data, guidance=guidance, progress=False)


@pytest.mark.parametrize("method", ["DC", "DSA", "DM"])
def test_alpha_zero_guidance_reproduces_the_baseline_exactly(method, pool_root):
    data = load_dataset("Digits")
    base = make_spec("Digits", method, 1, iterations=6, **FAST)
    zero = dataclasses.replace(base, guidance=_guidance(alphas=(0.0,)))
    guided = dataclasses.replace(base, guidance=_guidance())
    a, b, c = (_run(s, data, pool_root) for s in (base, zero, guided))
    assert torch.equal(a["images"], b["images"])  # adding guidance shifts no other stream
    assert a["history"] == b["history"]
    assert not torch.equal(a["images"], c["images"])  # and α > 0 does change the result


def test_every_condition_at_a_seed_starts_from_the_same_set(pool_root):
    data = load_dataset("Digits")
    base = make_spec("Digits", "DM", 1, iterations=50, **FAST)
    conditions = [None, _guidance(), _guidance(alphas=(1000.0,)), _guidance(epoch=1),
                  _guidance(n_models=2), _guidance(kind="cclom", real_batch=64),
                  _guidance(epoch=0), _guidance(ptm_only=True)]
    starts = [initial_synthetic_set(dataclasses.replace(base, guidance=g), data)[0]
              for g in conditions]
    assert all(torch.equal(starts[0], start) for start in starts[1:])
    other_seed = initial_synthetic_set(dataclasses.replace(base, seed=1), data)[0]
    assert not torch.equal(starts[0], other_seed)
    # a 0-iteration guided run through the store returns exactly that set
    ws = Workspace(RunStore(pool_root.parent / "store-starts"), pool_root=pool_root,
                   device="cpu", progress=False)
    zero = dataclasses.replace(base, iterations=0, guidance=_guidance(n_models=2))
    assert torch.equal(distill_run(zero, ws).tensors()["images"], starts[0])


def test_the_iteration_count_is_not_part_of_the_replicate():
    data = load_dataset("Digits")
    long = make_spec("Digits", "DSA", 1, iterations=8, **FAST)
    short = dataclasses.replace(long, iterations=4)
    saved = {}
    out_long = distill(long, data, progress=False, checkpoint_every=4,
                       save_checkpoint=lambda state, done: saved.setdefault(done, state["images"].clone()))
    out_short = distill(short, data, progress=False)
    assert torch.equal(saved[4], out_short["images"])  # the same first 4 iterations
    assert out_long["history"][:4] == out_short["history"]
    assert torch.equal(distill(dataclasses.replace(long, iterations=0), data,
                               progress=False)["images"], initial_synthetic_set(long, data)[0])


def test_the_random_real_subset_of_a_seed_is_the_real_initialization_of_that_seed(tmp_path):
    data = load_dataset("Digits")
    ws = Workspace(RunStore(tmp_path), device="cpu", progress=False)
    for seed in (0, 3):
        subset, labels = training_set(RealSubsetSpec("Digits", 2, seed), ws)
        for method in ("DC", "DM"):
            start, start_labels = initial_synthetic_set(
                make_spec("Digits", method, 2, init="real", seed=seed), data)
            assert torch.equal(subset, start) and torch.equal(labels, start_labels)


def test_evaluations_of_different_sets_at_one_seed_share_networks_order_and_augmentation(
        tmp_path, monkeypatch):
    seen = []

    def capture(images, labels, data, archs, n_nets, protocol, seed_parts, **kwargs):
        seen.append(tuple(seed_parts))
        return [{"arch": archs[0], "net": 0, "accuracy": 0.5, "train_accuracy": 0.5,
                 "seconds": 0.0}]

    monkeypatch.setattr(evaluations_module, "evaluate_images", capture)
    ws = Workspace(RunStore(tmp_path), device="cpu", progress=False)
    protocol = protocol_for("DM", epochs=2)
    baseline = make_spec("Digits", "DM", 1, iterations=2, seed=4, **FAST)
    other = dataclasses.replace(baseline, iterations=3, lr_img=0.5)
    for subject in (baseline, other, RealSubsetSpec("Digits", 1, 4)):
        evaluation_run(EvaluationSpec(subject, "ConvNetW32", 1, protocol), ws)
    assert seen == [evaluation_seed_parts("Digits", 4)] * 3
    data = load_dataset("Digits")
    device = torch.device("cpu")
    first = _network(data, "ConvNetW32", network_seed_parts(seen[0], 1), device)
    second = _network(data, "ConvNetW32", network_seed_parts(seen[1], 1), device)
    for a, b in zip(first[0].state_dict().values(), second[0].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for stream in (1, 2):  # data order, then augmentation: each its own stream, shared
        assert torch.equal(torch.randperm(50, generator=first[stream]),
                           torch.randperm(50, generator=second[stream]))
    assert not torch.equal(torch.randperm(50, generator=first[1]),
                           torch.randperm(50, generator=first[2]))
    next_seed = _network(data, "ConvNetW32", network_seed_parts(
        evaluation_seed_parts("Digits", 5), 1), device)
    assert not torch.equal(first[0].state_dict()["classifier.weight"],
                           next_seed[0].state_dict()["classifier.weight"])


def test_a_different_seed_changes_every_stream():
    data = load_dataset("Digits")
    states = []
    for seed in (0, 1):
        spec = make_spec("Digits", "DSA", 1, iterations=1, seed=seed, **FAST)
        states.append(DistillState(spec, data, *initial_synthetic_set(spec, data), None, None,
                                   torch.device("cpu"), None, iteration=3))
    for purpose in ("real", "augment", "inner order", "guidance"):
        draws = [torch.randperm(100, generator=s.generator(purpose)) for s in states]
        assert not torch.equal(*draws), purpose
    weights = [next(iter(s.fresh_network().state_dict().values())) for s in states]
    assert not torch.equal(*weights)
    assert not torch.equal(states[0].images, states[1].images)


def _distill_id(capsys, args) -> str:
    assert main(args) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("distillation "))
    return line.split()[1].rstrip(":")


def test_the_run_id_names_the_pool_and_a_pool_of_another_recipe_is_refused(tmp_path, capsys):
    first, second = tmp_path / "pools-a", tmp_path / "pools-b"
    store = str(tmp_path / "store")
    common = ["--quiet", "--device", "cpu"]
    assert main(["pretrain", "--source", "Digits", "--arch", "ConvNetW32", "--epochs", "1",
                 "--pool-root", str(first), *common]) == 0
    assert main(["pretrain", "--source", "Digits", "--arch", "ConvNetW32", "--epochs", "1",
                 "--lr", "0.05", "--pool-root", str(second), *common]) == 0
    distill_args = ["distill", "--dataset", "Digits", "--method", "DM", "--ipc", "1", "--model",
                    "ConvNetW32", "--iterations", "3", "--clom", "--pool", "ConvNetW32",
                    "--alphas", "10", "--no-eval", "--store", store, *common]
    id_a = _distill_id(capsys, [*distill_args, "--pool-root", str(first)])
    id_b = _distill_id(capsys, [*distill_args, "--pool-root", str(second)])
    assert id_a != id_b  # the retrained pool is not served the first pool's result
    assert len(list((tmp_path / "store").glob("distill-*/spec.json"))) == 2
    # the untrained PTM (epoch 0) works from the CLI, without any trained member
    id_0 = _distill_id(capsys, [*distill_args, "--pool-epoch", "0", "--pool-root",
                                str(tmp_path / "empty")])
    spec = RunStore(store).load(id_0).spec
    assert spec["guidance"]["epoch"] == 0 and spec["guidance"]["pool_recipe"] == "untrained"
    # a run (or a resume) naming the first pool, pointed at the second, is refused before
    # anything is written
    run_a = RunStore(store).load(id_a)
    spec_a = spec_from_dict(run_a.spec)
    fresh = RunStore(tmp_path / "store2")
    with pytest.raises(PoolError, match="refusing to mix"):
        distill_run(spec_a, Workspace(fresh, pool_root=second, device="cpu", progress=False))
    assert not (tmp_path / "store2").exists() or not any((tmp_path / "store2").iterdir())
