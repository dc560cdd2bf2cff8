"""Pool diversity: linear CKA's invariances, disagreement of tiny Digits pools, gain correlation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools.diversity import gain_correlation, linear_cka, pool_diversity
from ptmdd_helpers.pools.members import MemberSpec
from ptmdd_helpers.pools.pool import load_member
from ptmdd_helpers.pools.pretrain import train_member

ONE_EPOCH = TrainRecipe(epochs=1, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256,
                        milestones=(50, 100))


def _features(n=300, d=20, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_linear_cka_of_a_matrix_with_itself_is_one():
    x = _features()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_is_invariant_to_rotation_and_isotropic_scaling():
    x = _features()
    q, _ = torch.linalg.qr(_features(20, 20, seed=1))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)
    # and it compares matrices of different widths: x padded with zero columns is still x
    padded = torch.cat([x @ q, torch.zeros(len(x), 5, dtype=x.dtype)], dim=1)
    assert linear_cka(x, padded) == pytest.approx(1.0, abs=1e-10)


def test_linear_cka_of_independent_features_is_small():
    x, y = _features(2000, 10, seed=2), _features(2000, 10, seed=3)
    assert 0.0 <= linear_cka(x, y) < 0.05


def test_linear_cka_refuses_different_numbers_of_rows():
    with pytest.raises(ValueError, match="same N"):
        linear_cka(_features(10, 3), _features(11, 3))


@pytest.fixture(scope="module")
def twin_pool(tmp_path_factory):
    """A Digits MLP pool whose seed1 is a copy of seed0 (1 epoch), and a root to copy it from."""
    root = tmp_path_factory.mktemp("diversity-pool")
    train_member(MemberSpec("Digits", "MLP", 0, ONE_EPOCH), root=root, device="cpu",
                 progress=False)
    member = root / "Digits" / "MLP"
    shutil.copytree(member / "seed0", member / "seed1")
    return root


def test_a_pool_of_one_member_has_no_pairs(twin_pool):
    result = pool_diversity("Digits", ["MLP"], 1, 1, pool_root=twin_pool)
    assert result["pairs"] == 0 and result["disagreement"] == 0.0
    assert result["cka_distance"] == 0.0 and result["images"] > 0


def test_two_identical_members_do_not_disagree(twin_pool):
    result = pool_diversity("Digits", ["MLP"], 2, 1, pool_root=twin_pool, max_images=200)
    assert result["pairs"] == 1 and result["images"] == 200
    assert result["disagreement"] == 0.0
    assert result["cka_distance"] == pytest.approx(0.0, abs=1e-12)


def test_a_label_permuted_copy_always_disagrees_with_the_same_features(twin_pool, tmp_path):
    root = tmp_path / "pools"
    shutil.copytree(twin_pool, root)
    model = load_member("Digits", "MLP", 1, 1, root=root)
    shift = torch.roll(torch.arange(10), 1)  # a derangement: no class keeps its logit
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[shift])
        model.classifier.bias.copy_(model.classifier.bias[shift])
    path = root / "Digits" / "MLP" / "seed1" / "epoch_1.pt"
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 1}}, path)
    result = pool_diversity("Digits", ["MLP"], 2, 1, pool_root=root)
    # every prediction moves to another class; the features before the last layer are unchanged
    assert result["disagreement"] == 1.0
    assert result["cka_distance"] == pytest.approx(0.0, abs=1e-12)


def test_members_of_different_architectures_are_measured(tmp_path):
    for arch in ("MLP", "ConvNetW32"):
        train_member(MemberSpec("Digits", arch, 0, ONE_EPOCH), root=tmp_path, device="cpu",
                     progress=False)
    result = pool_diversity("Digits", ["MLP", "ConvNetW32"], 1, 1, pool_root=tmp_path)
    assert result["pairs"] == 1
    assert 0.0 < result["disagreement"] < 1.0 and 0.0 < result["cka_distance"] < 1.0


def test_gain_correlation_of_a_perfect_line_is_one():
    result = gain_correlation([1.0, 3.0, 5.0, 7.0, 9.0], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert result["r"] == pytest.approx(1.0) and result["rho"] == pytest.approx(1.0)
    assert result["n"] == 5 and result["high"] == pytest.approx(1.0)


def test_gain_correlation_matches_numpy_and_its_interval_holds_r():
    gains = [0.5, 1.2, 0.3, 2.0, 1.1, 0.9, 1.7]
    diversity = [0.10, 0.25, 0.15, 0.30, 0.12, 0.22, 0.28]
    result = gain_correlation(gains, diversity, confidence=0.9)
    assert result["r"] == pytest.approx(np.corrcoef(gains, diversity)[0, 1], abs=1e-12)
    assert result["low"] < result["r"] < result["high"]
    wider = gain_correlation(gains, diversity, confidence=0.99)
    assert wider["low"] < result["low"] and wider["high"] > result["high"]


def test_gain_correlation_needs_four_pools_for_an_interval():
    result = gain_correlation([1.0, 2.0, 2.5], [0.1, 0.3, 0.2])
    assert result["n"] == 3 and result["low"] is None and result["high"] is None
    assert -1.0 <= result["r"] <= 1.0


def test_gain_correlation_refuses_unpaired_input():
    with pytest.raises(ValueError, match="same length"):
        gain_correlation([1.0, 2.0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        gain_correlation([1.0, float("nan")], [0.1, 0.2])
