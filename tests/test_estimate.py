"""The cost estimate of a profile (``ptmdd study --dry-run --estimate``): each shape of work timed
once, multiplied out over what the store lacks, zero for what it holds."""

from __future__ import annotations

import io
import re

import pytest
import torch
import yaml

from ptmdd_helpers import study
from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.study.estimate import Timer, estimate, print_estimates

PROFILE = {
    "shared": {
        "target": "Digits", "other": "MNIST5k8", "device": "cpu", "executor": "local",
        "workers": 1, "seeds": [0, 1], "ipcs": [1], "alpha": 10,
        "distill": {"model": "ConvNetW32", "batch_real": 16, "DM": {"iterations": 20}},
        "pool": {"arch": "ConvNetW32", "n_models": 1, "epoch": "final", "keep_epochs": None,
                 "recipe": {"epochs": 2, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.005,
                            "batch_size": 256, "milestones": [50, 100]}},
        "eval": {"archs": None, "n_nets": 2, "epochs": 30},
    },
    "05_alpha": {"methods": ["DM"], "alphas": [0, 10, 100], "ptm_only": False},
}


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "estimate.yaml"
    path.write_text(yaml.safe_dump(PROFILE))
    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}"]
    return path, roots


def test_each_shape_is_timed_once_and_multiplied_out(profile):
    path, roots = profile
    params = study.load_profile(path, roots)["05_alpha"]
    grid = study.build_grid("05_alpha", params)
    workspace = study.workspace(params)
    with Timer(workspace) as timer:
        cost = estimate([grid], workspace, "05_alpha", timer)
        # 6 distillations (2 seeds × 3 α; α 0 is the baseline): two shapes, unguided and guided
        assert len(grid.distillations) == 6
        shapes = [key for key in timer.cache if not isinstance(key, tuple)]
        assert len(shapes) == 2
        per_iteration = {timer.per_iteration(spec) for spec in grid.distillations}
        assert len(per_iteration) == 2 and all(s > 0 for s in per_iteration)
        expected = sum(timer.per_iteration(spec) * spec.iterations for spec in grid.distillations)
        assert cost.seconds["distill"] == pytest.approx(expected)
        # one evaluation shape (IPC 1 sets, ConvNetW32, the DM protocol): 6 evaluations of 2 nets
        network = timer.per_network("Digits", 10, "ConvNetW32", grid.evaluations[0].protocol)
        assert cost.seconds["evaluation"] == pytest.approx(6 * 2 * network)
        assert cost.seconds["member"] > 0
    # what the store holds costs nothing
    study.compute(grid, verbose=False)
    with Timer(workspace) as timer:
        assert estimate([grid], workspace, "05_alpha", timer).total == 0


def test_the_dry_run_prints_hours_per_notebook_and_the_total(profile, capsys):
    path, roots = profile
    out = io.StringIO()
    study.dry_run(path, roots, only=["05"], file=out, estimate=True)
    text = out.getvalue()
    assert "estimated compute on cpu, sequential (hours)" in text
    assert re.search(r"^05_alpha\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", text, re.M)
    assert float(re.search(r"\(total: (\d+) s;", text).group(1)) > 0
    overrides = [f"--set={item}" for item in roots]
    assert main(["study", "--profile", str(path), "--estimate", *overrides]) == 2
    assert "--estimate goes with --dry-run" in capsys.readouterr().err


def test_with_batches_of_replicates_each_shape_is_also_timed_as_a_batch(profile):
    path, roots = profile
    params = study.load_profile(path, roots)["05_alpha"]
    grid = study.build_grid("05_alpha", params)
    workspace = study.workspace(params)
    with Timer(workspace, replicas=3) as timer:
        cost = estimate([grid], workspace, "05_alpha", timer)
        batched = {spec: timer.per_iteration(spec, batched=True) for spec in grid.distillations}
        assert all(s > 0 for s in batched.values())
        assert batched != {spec: timer.per_iteration(spec) for spec in grid.distillations}
        assert cost.batched_distill == pytest.approx(
            sum(s * spec.iterations for spec, s in batched.items()))
        assert cost.batched_total == pytest.approx(
            cost.total - cost.seconds["distill"] + cost.batched_distill)
    out = io.StringIO()
    print_estimates([cost], out, "cpu", replicas=3)
    assert re.search(r"batches of up to 3 replicates .* 05_alpha [\d.]+$", out.getvalue(), re.M)


def test_a_looping_method_is_timed_at_one_and_two_outer_steps_and_extrapolated(tmp_path):
    from dataclasses import replace

    from ptmdd_helpers.distill import make_spec
    from ptmdd_helpers.store.runs import Workspace

    spec = make_spec("Digits", "DC", 2, iterations=40, model="ConvNetW32", batch_real=16,
                     outer_loop=6, inner_loop=2, seed=3)
    with Timer(Workspace(tmp_path / "store", progress=False)) as timer:
        per = timer.per_iteration(spec)
        shape = replace(spec, seed=0, iterations=1)
        one, two = (timer.cache[replace(shape, outer_loop=k)] for k in (1, 2))
        assert shape not in timer.cache  # six outer steps never run
        assert two > one > 0
        assert per == pytest.approx(one + 5 * (two - one))


def test_mtt_without_its_experts_on_disk_is_timed_on_trajectories_of_their_shape(tmp_path):
    """Before its experts exist (a profile from an empty pool root) MTT is timed all the same, on
    synthetic trajectories of the model's shape, once per shape, writing nothing."""
    from dataclasses import replace

    from ptmdd_helpers.distill import make_spec
    from ptmdd_helpers.networks.models import create_model
    from ptmdd_helpers.pools.experts import SyntheticExperts
    from ptmdd_helpers.store.runs import Workspace

    experts = SyntheticExperts(create_model("ConvNetW32", 1, 10, (8, 8)))
    first, third = experts.flat(0, 1, ()), experts.flat(1, 3, ())
    assert first.shape == third.shape == experts.start.shape and not torch.equal(first, third)
    spec = make_spec("Digits", "MTT", 1, iterations=50, model="ConvNetW32", syn_steps=4,
                     expert_epochs=1, max_start_epoch=2, n_experts=1, seed=2)
    workspace = Workspace(tmp_path / "store", pool_root=tmp_path / "pools", progress=False)
    assert not (tmp_path / "pools").exists()
    with Timer(workspace) as timer:
        assert timer.per_iteration(spec) > 0
        assert timer.per_iteration(replace(spec, seed=5, iterations=500)) == timer.cache[
            replace(spec, seed=0, iterations=1)]  # one shape, timed once
    assert not (tmp_path / "pools").exists()  # nothing trained, nothing written


def test_split_sizes_of_a_validation_split_need_no_data():
    from ptmdd_helpers.study.estimate import split_sizes

    assert split_sizes("FashionMNIST-val") == (54000, 6000)  # 600 of each class's 6000 held out
    assert split_sizes("CIFAR100-val") == (45000, 5000)
    assert split_sizes("Digits-val") == (1288, 149)  # from the data: ceil(10 %) of each class
