"""Verdicts, tables and the index of the study report."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from ptmdd_helpers import report
from ptmdd_helpers.report import family, intervals


def _frame(groups: dict[str, dict[int, list[float]]]) -> pd.DataFrame:
    """Rows per network: condition, distillation seed, accuracy (a fraction)."""
    rows = [{"condition": c, "subject.seed": seed, "accuracy": a}
            for c, seeds in groups.items() for seed, accs in seeds.items() for a in accs]
    return pd.DataFrame(rows)


def test_welch_interval_matches_scipy():
    treated, base = [81.0, 83.5, 82.0, 84.0], [79.0, 80.5, 78.0]
    effect, low, high, df, _ = report.welch_interval([(treated, base)])
    result = stats.ttest_ind(treated, base, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert effect == pytest.approx(sum(treated) / 4 - sum(base) / 3)
    assert (low, high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert df == pytest.approx(result.df)


def test_paired_verdict_equals_ttest_rel_on_a_hand_made_frame():
    # seed means (points): guided 81, 85, 84, 80; baseline 80, 83, 84, 77 (two networks each)
    frame = _frame({
        "guided": {0: [0.80, 0.82], 1: [0.84, 0.86], 2: [0.83, 0.85], 3: [0.79, 0.81]},
        "baseline": {0: [0.79, 0.81], 1: [0.82, 0.84], 2: [0.84, 0.84], 3: [0.76, 0.78]},
    })
    verdict = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"},
                             claim="guidance helps")
    t, b = [81.0, 85.0, 84.0, 80.0], [80.0, 83.0, 84.0, 77.0]
    result = stats.ttest_rel(t, b)
    ci = result.confidence_interval(0.95)
    assert verdict.paired and verdict.unit.startswith("paired by seed: 4 seed pairs")
    assert verdict.effect == pytest.approx(1.5)
    assert (verdict.low, verdict.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert verdict.p_value == pytest.approx(result.pvalue)
    assert [d["difference"] for d in verdict.differences] == pytest.approx([1.0, 2.0, 0.0, 3.0])
    assert verdict.sd_paired == pytest.approx(stats.tstd([1.0, 2.0, 0.0, 3.0]))
    # an unpaired comparison of the same runs: the SD of a difference of independent seeds
    assert verdict.sd_unpaired == pytest.approx(math.sqrt(stats.tvar(t) + stats.tvar(b)))
    assert "Per-seed differences (points): +1.00, +2.00, +0.00, +3.00" in verdict.text()


def test_paired_interval_is_narrower_than_welch_when_seeds_share_streams():
    # a large seed effect shared by both conditions, a small constant treatment effect
    seeds = {s: 0.60 + 0.05 * s for s in range(5)}
    frame = _frame({"guided": {s: [v + 0.01] for s, v in seeds.items()},
                    "baseline": {s: [v + 0.002 * (s % 2)] for s, v in seeds.items()}})
    paired = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"}, claim="c")
    unpaired = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"},
                              claim="c", paired=False)
    assert paired.label == "supported" and unpaired.label == "inconclusive"
    assert not unpaired.paired and unpaired.unit.startswith("unpaired")
    assert paired.half_width < unpaired.half_width / 10


def test_groups_without_common_seeds_are_compared_unpaired_by_welch():
    frame = _frame({"guided": {0: [0.80], 1: [0.84], 2: [0.83]},
                    "baseline": {10: [0.70], 11: [0.74], 12: [0.71]}})
    verdict = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"},
                             claim="c")
    ci = stats.ttest_ind([80.0, 84.0, 83.0], [70.0, 74.0, 71.0],
                         equal_var=False).confidence_interval(0.95)
    assert not verdict.paired and "unpaired" in verdict.text()
    assert (verdict.low, verdict.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_stratified_paired_interval_averages_strata_with_equal_weights():
    a = [[2.0, 1.0, 3.0]]
    effect_a, low_a, high_a, _, _ = report.paired_interval(a)
    effect, low, high, _, _ = report.paired_interval([a[0], [0.0, 1.0, -1.0]])
    assert effect == pytest.approx(1.0)  # (2 + 0) / 2
    assert (high - low) < (high_a - low_a)


@pytest.mark.parametrize(("low", "high", "relation", "label"), [
    (0.5, 3.0, ">", "supported"),
    (-3.0, -0.1, ">", "not supported"),
    (-1.0, 2.0, ">", "inconclusive"),
    (-3.0, -0.1, "<", "supported"),
    (-0.5, 2.0, ">=", "supported"),  # within the 1-point margin
    (-3.0, -1.5, ">=", "not supported"),
    (-1.5, 0.5, ">=", "inconclusive"),
    (math.nan, math.nan, ">", "inconclusive"),
])
def test_decide(low, high, relation, label):
    assert report.decide(low, high, relation, margin=1.0) == label


def test_fewer_than_two_seeds_gives_no_interval():
    frame = _frame({"guided": {0: [0.60, 0.61, 0.59]}, "baseline": {0: [0.70, 0.71, 0.69]}})
    verdict = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"},
                             claim="guidance helps")
    assert verdict.effect == pytest.approx(-10.0)
    assert math.isnan(verdict.low) and math.isnan(verdict.p_value)
    assert verdict.label == "inconclusive (fewer than 2 seeds)"
    assert "no interval" in verdict.text()


def test_06_averages_architectures_within_a_seed_before_pairing():
    rows = []
    for seed, (t, b) in enumerate([((0.70, 0.50), (0.69, 0.50)), ((0.72, 0.54), (0.70, 0.52)),
                                   ((0.71, 0.52), (0.71, 0.50))]):
        for arch, acc_t, acc_b in (("ConvNet", t[0], b[0]), ("AlexNet", t[1], b[1])):
            for net in range(2):  # two networks per architecture and set, equal here
                rows += [{"condition": "best", "arch": arch, "subject.seed": seed, "net": net,
                          "accuracy": acc_t},
                         {"condition": "base", "arch": arch, "subject.seed": seed, "net": net,
                          "accuracy": acc_b}]
    frame = pd.DataFrame(rows)
    verdict = report.compare(frame, {"condition": "best"}, {"condition": "base"}, claim="c",
                             average=["arch"])
    # per seed: mean over networks, then over the two architectures -> 3 units, not 6 or 12
    expected = [0.5, 2.0, 1.0]
    assert [d["difference"] for d in verdict.differences] == pytest.approx(expected)
    ci = stats.ttest_rel([60.0, 63.0, 61.5], [59.5, 61.0, 60.5]).confidence_interval(0.95)
    assert (verdict.low, verdict.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_holm_decisions_on_hand_made_p_values():
    # m = 4: thresholds 0.0125, 0.0167, 0.025, 0.05 for the sorted p-values
    assert family.holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    assert family.holm([0.001, 0.012, 0.02, 0.04]) == [True, True, True, True]
    assert family.holm([0.02, 0.5, math.nan]) == [False, False, False]
    claims = [
        {"p_value": 0.001, "effect": 2.0, "relation": ">", "margin": 0.0},
        {"p_value": 0.002, "effect": -2.0, "relation": ">", "margin": 0.0},
        {"p_value": 0.06, "effect": 1.0, "relation": ">", "margin": 0.0},
        {"p_value": 0.003, "effect": -2.0, "relation": "<", "margin": 0.0},
    ]
    assert family.family_decisions(claims) == [
        "supported", "not supported", "inconclusive", "supported"]


def test_seeds_needed_is_where_the_half_width_falls_below_the_effect():
    n = intervals.seeds_needed(1.0, 1.0)
    half = lambda k: stats.t.ppf(0.975, k - 1) / math.sqrt(k)  # noqa: E731
    assert half(n) < 1.0 <= half(n - 1)
    assert intervals.seeds_needed(0.0, 1.0) is None
    inconclusive = report.compare(
        _frame({"g": {0: [0.70], 1: [0.725], 2: [0.69]}, "b": {0: [0.69], 1: [0.72], 2: [0.70]}}),
        {"condition": "g"}, {"condition": "b"}, claim="c")
    assert inconclusive.label == "inconclusive" and inconclusive.seeds_needed > 3
    assert "Planning aid" in inconclusive.text()


def test_compare_refuses_an_empty_selection():
    frame = _frame({"guided": {0: [0.9, 0.8]}})
    with pytest.raises(ValueError, match="0 baseline rows"):
        report.compare(frame, {"condition": "guided"}, {"condition": "nope"}, claim="c")


def test_accuracy_table_gives_the_sd_over_seeds_of_the_seed_means():
    frame = pd.DataFrame({"method": ["DM"] * 8, "ipc": [1, 1, 1, 1, 10, 10, 10, 10],
                          "subject.seed": [0, 0, 1, 1, 0, 0, 1, 1],
                          "accuracy": [0.5, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8]})
    table = report.accuracy_table(frame, rows=["method"], columns=["ipc"])
    assert list(table.columns) == ["method", "ipc 1", "ipc 10"]
    # IPC read as floats (a study frame whose whole-dataset rows have none): still "ipc 1"
    floats = report.accuracy_table(frame.astype({"ipc": float}), rows=["method"], columns=["ipc"])
    assert list(floats.columns) == ["method", "ipc 1", "ipc 10"]
    # seed means 55 and 75: mean 65, sample SD 14.14 over n = 2 seeds (not 4 networks)
    assert table.loc[0, "ipc 1"] == "65.00 ± 14.14 (n=2)"
    assert table.loc[0, "ipc 10"] == "80.00 ± 0.00 (n=2)"
    long = report.accuracy_table(frame[frame["ipc"] == 1], rows=["method"])
    assert long.iloc[0, 2] == "7.07"  # the spread over the networks of one set, its own column
    markdown = report.to_markdown(table)
    assert markdown.splitlines()[0] == "| method | ipc 1 | ipc 10 |"
    latex = report.to_latex(table, caption="Accuracy (%) & more")
    assert "\\toprule" in latex and "Accuracy (\\%) \\& more" in latex


def test_report_files_and_index(tmp_path):
    frame = _frame({"a": {0: [0.5, 0.6], 1: [0.55, 0.6], 2: [0.52, 0.5]},
                    "b": {0: [0.4, 0.45], 1: [0.5, 0.45], 2: [0.41, 0.44]}})
    frame["run_id"] = frame["condition"] + "-run"
    frame["subject_id"] = frame["condition"] + "-set"
    rep = report.Report("01_test", "unit", title="Test", question="Q?", directory=tmp_path)
    fig = report.accuracy_plot(frame, x="condition")
    paths = rep.figure(fig)
    table_paths = rep.table(report.accuracy_table(frame, rows=["condition"]), caption="cap")
    verdict = rep.verdict(report.compare(frame, {"condition": "a"}, {"condition": "b"},
                                         claim="a beats b"))
    rep.verdict(report.compare(frame, {"condition": "a"}, {"condition": "b"}, relation=">=",
                               margin=1.0, claim="a is not worse than b"))
    rep.write()
    for path in [*paths, *table_paths, tmp_path / "01_test_paired.png"]:
        assert path.is_file() and path.stat().st_size > 0
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    stored = json.loads((tmp_path / "01_test.verdicts.json").read_text())
    assert stored[0]["label"] == verdict.label and stored[0]["claim"] == "a beats b"
    assert stored[0]["half_width"] == pytest.approx(verdict.half_width)
    history = report.record_batch(tmp_path, {"date": "today", "wall seconds": 12.5})
    index = report.write_index(tmp_path, "unit", ["01_test", "02_missing"], {"machine": "m"},
                               history).read_text()
    assert "![01_test](01_test.png)" in index and "| cap" not in index
    assert "a beats b" in index and f"**{verdict.label}**" in index
    assert "(no results yet" in index and "| today | 12.5 |" in index
    assert report.RULE in index and "Holm" in index
    assert ("#1 and #2: 2 trained-on sets (distillations or real subsets) and 2 evaluation runs "
            "in common") in index
