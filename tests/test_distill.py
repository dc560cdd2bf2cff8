"""DC, DSA and DM on the offline Digits set: distances, losses, reproducibility, resume, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ptmdd_helpers.data.datasets import LoadedDataset, load_dataset
from ptmdd_helpers.distill import DistillationDiverged, distill, loops_for_ipc, make_spec
from ptmdd_helpers.distill.dm import mean_embedding_distance
from ptmdd_helpers.distill.engine import LOG_EVERY
from ptmdd_helpers.distill.matching import layer_distance, match_loss
from ptmdd_helpers.networks.models import create_model
from ptmdd_helpers.store.runs import Workspace, distill_run
from ptmdd_helpers.store.runstore import RunStore

FAST = {"model": "ConvNetW32", "batch_real": 16}


def test_layer_distance_equals_its_formula_on_hand_made_gradients():
    real = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    syn = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    # row 0: orthogonal → 1 − 0; row 1: parallel → 1 − 2√2·√2/(√2·2√2 + 1e-6) ≈ 0
    expected = 1.0 + (1 - 4.0 / (2 ** 0.5 * 8 ** 0.5 + 1e-6))
    assert layer_distance(real, syn).item() == pytest.approx(expected, abs=1e-7)
    conv_real = torch.randn(4, 3, 3, 3)
    conv_syn = torch.randn(4, 3, 3, 3)
    rows_r, rows_s = conv_real.reshape(4, -1), conv_syn.reshape(4, -1)
    by_hand = sum(1 - (r @ s) / (r.norm() * s.norm() + 1e-6) for r, s in zip(rows_r, rows_s, strict=True))
    assert layer_distance(conv_real, conv_syn).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert layer_distance(torch.ones(5), torch.zeros(5)).item() == 0  # biases ignored
    assert match_loss([conv_syn, torch.ones(4)], [conv_real, torch.zeros(4)]).item() == (
        pytest.approx(by_hand.item(), rel=1e-6))


def test_loops_table_and_rule_outside_it():
    assert loops_for_ipc(10) == (10, 50) and loops_for_ipc(50) == (50, 10)
    assert loops_for_ipc(5) == (1, 1)  # nearest tabulated IPC (ties to the smaller)
    assert loops_for_ipc(100) == (50, 10)
    assert loops_for_ipc(15) == (10, 50)


def test_dm_loss_is_zero_when_synthetic_equals_real():
    net = create_model("ConvNetW32", 1, 10, 8)
    data = load_dataset("Digits")
    reals = [data.train_images[idx[:7]] for idx in data.class_indices]
    assert mean_embedding_distance(net, reals, [r.clone() for r in reals]).item() == (
        pytest.approx(0.0, abs=1e-10))
    shuffled = [r.flip(0) for r in reals]  # same mean, other order
    assert mean_embedding_distance(net, reals, shuffled).item() < 1e-8
    assert mean_embedding_distance(net, reals, [r + 1 for r in reals]).item() > 1e-3


def test_dm_loss_through_the_loop_is_zero_when_synthetic_set_is_the_real_batch():
    full = load_dataset("Digits")
    keep = torch.cat([idx[:20] for idx in full.class_indices])  # 20 images in every class
    data = LoadedDataset(full.info, full.train_images[keep], full.train_labels[keep],
                         full.test_images, full.test_labels)
    # IPC = class size and a real batch of the whole class: both sides hold the same images
    spec = make_spec("Digits", "DM", 20, iterations=1, augment=False, init="real",
                     batch_real=20, model="ConvNetW32")
    out = distill(spec, data, progress=False)
    assert out["history"][0] < 1e-8
    with_augmentation = distill(dataclasses.replace(spec, augment=True), data,
                                progress=False)
    assert with_augmentation["history"][0] < 1e-8  # the same transform on both sides


def test_same_spec_twice_gives_identical_tensors():
    data = load_dataset("Digits")
    for method in ("DC", "DSA", "DM"):
        spec = make_spec("Digits", method, 2, iterations=3, **FAST)
        a = distill(spec, data, progress=False)
        b = distill(spec, data, progress=False)
        assert torch.equal(a["images"], b["images"]), method
        assert a["history"] == b["history"]
        c = distill(dataclasses.replace(spec, seed=1), data, progress=False)
        assert not torch.equal(a["images"], c["images"])


def test_each_method_changes_the_images_and_lowers_its_loss():
    data = load_dataset("Digits")
    for method, iterations in (("DC", 40), ("DM", 40)):
        spec = make_spec("Digits", method, 1, iterations=iterations, init="real", **FAST)
        out = distill(spec, data, progress=False)
        first, last = out["history"][:10], out["history"][-10:]
        assert sum(last) < sum(first), method


@pytest.mark.parametrize("method", ["DC", "DSA", "DM"])
def test_the_host_reads_the_losses_only_at_logging_points(method, host_reads):
    """20 iterations (DC/DSA with 3 outer steps and inner training each): two reads of the
    pending losses and two finiteness checks, at iterations 10 and 20, not one per step."""
    data = load_dataset("Digits")
    spec = make_spec("Digits", method, 2, iterations=2 * LOG_EVERY, outer_loop=3, inner_loop=2,
                     **FAST)
    with host_reads:
        out = distill(spec, data, progress=False)
    assert sorted(host_reads.reads) == ["__bool__", "__bool__", "tolist", "tolist"]
    assert len(out["history"]) == 2 * LOG_EVERY
    assert all(isinstance(value, float) for value in out["history"])


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, interrupt_once):
    spec = make_spec("Digits", "DSA", 2, iterations=6, **FAST)
    straight = distill_run(spec, Workspace(RunStore(tmp_path / "a"), progress=False,
                                           checkpoint_every=2, device="cpu"))
    seen = interrupt_once("DSA")
    workspace = Workspace(RunStore(tmp_path / "b"), progress=False, checkpoint_every=2,
                          device="cpu")
    with pytest.raises(KeyboardInterrupt):
        distill_run(spec, workspace)
    assert not workspace.store.exists(spec)
    resumed = distill_run(spec, workspace)
    assert seen == [0, 1, 2, 3, 4, 5, 4, 5]  # resumed from the checkpoint after iteration 4
    assert torch.equal(straight.tensors()["images"], resumed.tensors()["images"])
    assert straight.metrics["loss_history"] == resumed.metrics["loss_history"]


def test_stored_run_is_returned_without_work(tmp_path, monkeypatch):
    from conftest import replace_iteration

    spec = make_spec("Digits", "DM", 1, iterations=2, **FAST)
    workspace = Workspace(RunStore(tmp_path), progress=False, device="cpu")
    first = distill_run(spec, workspace)
    replace_iteration(monkeypatch, "DM", lambda state: 1 / 0)
    again = distill_run(spec, workspace)
    assert again.id == first.id
    assert (again.path / "grid.png").is_file()


def test_non_finite_loss_stops_and_keeps_the_last_good_set(tmp_path):
    spec = make_spec("Digits", "DM", 1, iterations=5, lr_img=1e38, **FAST)
    workspace = Workspace(RunStore(tmp_path), progress=False, device="cpu")
    with pytest.raises(DistillationDiverged, match="last good synthetic set") as info:
        distill_run(spec, workspace)
    assert torch.isfinite(info.value.images).all()
    assert not workspace.store.exists(spec)
    saved = list(tmp_path.rglob("last_good.pt"))
    assert len(saved) == 1
    assert torch.equal(torch.load(saved[0], weights_only=True)["images"], info.value.images)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"ipc": 0}, "IPC must be between 1 and the smallest class of Digits"),
     ({"ipc": 1000}, "IPC must be between 1"),
     ({"model": "ResNet1000"}, "unknown model 'ResNet1000'"),
     ({"init": "zeros"}, "unknown init"),
     ({"metric": "l1"}, "unknown matching metric")],
)
def test_bad_specs_are_refused_before_any_work(tmp_path, overrides, message):
    ipc = overrides.pop("ipc", 1)
    spec = make_spec("Digits", "DC", ipc, iterations=1, **{**FAST, **overrides})
    with pytest.raises(ValueError, match=message):
        distill_run(spec, Workspace(RunStore(tmp_path / "store"), progress=False))
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_unknown_method_and_dataset():
    with pytest.raises(ValueError, match="unknown method 'KIP'; valid: DC, DSA, DM"):
        make_spec("Digits", "KIP", 1)
    with pytest.raises(ValueError, match="unknown dataset 'Nope'"):
        make_spec("Nope", "DC", 1)
