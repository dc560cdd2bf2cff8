"""DD-Ranking's label-robust score: the formula on hand-made numbers and the per-seed table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ptmdd_helpers.evaluation.scores import label_robust_score, lrs_summary, lrs_table

E, INV_E = math.e, math.exp(-1.0)


def test_formula_on_hand_made_numbers():
    score = label_robust_score(0.6, 0.4, 0.9)
    assert score["hlr"] == pytest.approx(0.3)
    assert score["ior"] == pytest.approx(0.2)
    assert score["a"] == pytest.approx(0.5 * 0.2 - 0.5 * 0.3)  # −0.05
    assert score["lrs"] == pytest.approx((math.exp(-0.05) - INV_E) / (E - INV_E))
    assert score["lrs"] == pytest.approx(0.24819, abs=1e-5)


def test_weight_moves_the_balance():
    score = label_robust_score(0.6, 0.4, 0.9, w=1.0)  # IOR only
    assert score["a"] == pytest.approx(0.2)
    assert label_robust_score(0.6, 0.4, 0.9, w=0.0)["a"] == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="w must lie in"):
        label_robust_score(0.6, 0.4, 0.9, w=1.5)


def test_bounds():
    best = label_robust_score(1.0, 0.0, 1.0, w=1.0)  # a = IOR = 1
    assert best["a"] == pytest.approx(1.0) and best["lrs"] == pytest.approx(1.0)
    worst = label_robust_score(0.0, 0.0, 1.0, w=0.0)  # a = −HLR = −1
    assert worst["a"] == pytest.approx(-1.0) and worst["lrs"] == pytest.approx(0.0, abs=1e-12)
    middle = label_robust_score(0.5, 0.5, 0.5)  # a = 0
    assert middle["lrs"] == pytest.approx((1 - INV_E) / (E - INV_E))


def test_vectorized_over_arrays_and_series():
    arrays = label_robust_score(np.array([0.6, 0.5]), np.array([0.4, 0.5]), 0.9)
    assert arrays["hlr"] == pytest.approx([0.3, 0.4])
    assert arrays["lrs"][0] == pytest.approx(label_robust_score(0.6, 0.4, 0.9)["lrs"])
    series = label_robust_score(pd.Series([0.6, 0.5], index=["x", "y"]), 0.4, 0.9)
    assert list(series["ior"].index) == ["x", "y"]
    assert series["ior"]["y"] == pytest.approx(0.1)


def _rows(condition, method, ipc, seed, arch, accuracies):
    return [{"condition": condition, "method": method, "ipc": ipc, "subject.seed": seed,
             "arch": arch, "accuracy": acc} for acc in accuracies]


def _frame(real_seeds=(0, 1)):
    rows = []
    rows += _rows("baseline", "DC", 1, 0, "ConvNet", [0.50, 0.60])  # seed mean 0.55
    rows += _rows("baseline", "DC", 1, 1, "ConvNet", [0.70, 0.70])  # 0.70
    rows += _rows("+CLoM", "DC", 1, 0, "ConvNet", [0.80])
    for seed, acc in zip((0, 1), (0.30, 0.50), strict=True):
        if seed in real_seeds:
            rows += _rows("random real", "DC", 1, seed, "ConvNet", [acc, acc])
    rows += _rows("whole dataset", "whole", None, None, "ConvNet", [0.85, 0.95])  # 0.90
    return pd.DataFrame(rows)


def test_lrs_table_pairs_by_seed():
    table = lrs_table(_frame())
    assert len(table) == 3
    base = table[table["condition"] == "baseline"].set_index("subject.seed")
    assert base.loc[0, "acc_synthetic"] == pytest.approx(0.55)
    assert base.loc[0, "acc_real"] == pytest.approx(0.30)  # its own seed's subset
    assert base.loc[1, "acc_real"] == pytest.approx(0.50)
    assert base["acc_whole"].tolist() == pytest.approx([0.90, 0.90])
    assert base.loc[0, "hlr"] == pytest.approx(0.35)
    assert base.loc[0, "ior"] == pytest.approx(0.25)
    assert base.loc[1, "lrs"] == pytest.approx(label_robust_score(0.70, 0.50, 0.90)["lrs"])
    assert base["paired"].all()
    clom = table[table["condition"] == "+CLoM"].iloc[0]
    assert clom["ior"] == pytest.approx(0.50)

    summary = lrs_summary(table).set_index("condition")
    assert summary.loc["baseline", "n"] == 2
    lrs = base["lrs"].tolist()
    assert summary.loc["baseline", "lrs_mean"] == pytest.approx(np.mean(lrs))
    assert summary.loc["baseline", "lrs_sd"] == pytest.approx(np.std(lrs, ddof=1))
    assert "±" in summary.loc["baseline", "LRS"] and "(n=2)" in summary.loc["baseline", "LRS"]
    assert pd.isna(summary.loc["+CLoM", "lrs_sd"]) and "(n=1)" in summary.loc["+CLoM", "LRS"]


def test_lrs_table_only_some_conditions():
    table = lrs_table(_frame(), synthetic_conditions=["+CLoM"])
    assert table["condition"].tolist() == ["+CLoM"]


def test_lrs_table_unpaired_seed_uses_the_mean_over_seeds():
    table = lrs_table(_frame(real_seeds=(0,)))
    base = table[table["condition"] == "baseline"].set_index("subject.seed")
    assert bool(base.loc[0, "paired"]) and not bool(base.loc[1, "paired"])
    assert base.loc[1, "acc_real"] == pytest.approx(0.30)
    assert not lrs_summary(table).set_index("condition").loc["baseline", "paired"]


def test_lrs_table_averages_architectures_and_matches_the_whole_dataset_by_arch():
    rows = []
    rows += _rows("baseline", "DM", 10, 0, "ConvNet", [0.60])
    rows += _rows("baseline", "DM", 10, 0, "AlexNet", [0.40])
    rows += _rows("random real", "DM", 10, 0, "ConvNet", [0.30])
    rows += _rows("random real", "DM", 10, 0, "AlexNet", [0.20])
    rows += _rows("whole dataset", "whole", None, None, "ConvNet", [0.90])
    rows += _rows("whole dataset", "whole", None, None, "AlexNet", [0.70])
    row = lrs_table(pd.DataFrame(rows)).iloc[0]
    assert row["acc_synthetic"] == pytest.approx(0.50)
    assert row["acc_real"] == pytest.approx(0.25)
    assert row["acc_whole"] == pytest.approx(0.80)
    assert row["lrs"] == pytest.approx(label_robust_score(0.5, 0.25, 0.8)["lrs"])


@pytest.mark.parametrize("drop", ["random real", "whole dataset", "both"])
def test_frames_without_references_give_an_empty_table(drop):
    frame = _frame()
    dropped = ["random real", "whole dataset"] if drop == "both" else [drop]
    table = lrs_table(frame[~frame["condition"].isin(dropped)])
    assert table.empty and {"hlr", "ior", "lrs", "subject.seed"} <= set(table.columns)
    assert lrs_summary(table).empty


def test_an_empty_frame_gives_an_empty_table():
    assert lrs_table(pd.DataFrame()).empty
