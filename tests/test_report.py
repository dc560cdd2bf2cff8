"""Verdicts, tables and the index of the study report."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from ptmdd_helpers import report


def _frame(groups: dict[str, dict[int, list[float]]]) -> pd.DataFrame:
    """Rows per network: condition, distillation seed, accuracy (a fraction)."""
    rows = [{"condition": c, "subject.seed": seed, "accuracy": a}
            for c, seeds in groups.items() for seed, accs in seeds.items() for a in accs]
    return pd.DataFrame(rows)


def test_welch_interval_matches_scipy():
    treated, base = [81.0, 83.5, 82.0, 84.0], [79.0, 80.5, 78.0]
    effect, low, high, df = report.welch_interval([(treated, base)])
    result = stats.ttest_ind(treated, base, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert effect == pytest.approx(sum(treated) / 4 - sum(base) / 3)
    assert (low, high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert df == pytest.approx(result.df)


def test_stratified_interval_averages_strata_with_equal_weights():
    a = ([10.0, 12.0, 11.0], [9.0, 8.0, 10.0])  # difference 2
    b = ([50.0, 52.0, 51.0], [51.0, 50.0, 52.0])  # difference 0
    effect, low, high, _ = report.welch_interval([a, b])
    assert effect == pytest.approx(1.0)
    single = report.welch_interval([a])
    # averaging two strata halves the variance of each: the interval is narrower than stratum a's
    assert (high - low) < (single[2] - single[1])


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


def test_compare_uses_seed_means_when_every_group_has_two_seeds():
    frame = _frame({
        "guided": {0: [0.80, 0.82], 1: [0.84, 0.86], 2: [0.83, 0.85]},
        "baseline": {0: [0.70, 0.72], 1: [0.74, 0.76], 2: [0.71, 0.73]},
    })
    verdict = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"},
                             claim="guidance helps")
    seeds_t, seeds_b = [81.0, 85.0, 84.0], [71.0, 75.0, 72.0]
    ci = stats.ttest_ind(seeds_t, seeds_b, equal_var=False).confidence_interval(0.95)
    assert verdict.unit.startswith("distillation seeds")
    assert (verdict.n_treatment, verdict.n_baseline) == (3, 3)
    assert verdict.effect == pytest.approx(10.666666, abs=1e-4)
    assert verdict.low == pytest.approx(ci.low) and verdict.high == pytest.approx(ci.high)
    assert verdict.label == "supported"
    assert "Verdict: supported" in verdict.text()


def test_compare_falls_back_to_networks_with_one_seed_and_can_reject():
    frame = _frame({"guided": {0: [0.60, 0.61, 0.59]}, "baseline": {0: [0.70, 0.71, 0.69]}})
    verdict = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"},
                             claim="guidance helps")
    assert verdict.unit.startswith("evaluation networks")
    assert verdict.n_treatment == 3
    assert verdict.effect == pytest.approx(-10.0)
    assert verdict.label == "not supported"


def test_compare_with_a_single_unit_is_inconclusive():
    frame = _frame({"guided": {0: [0.9]}, "baseline": {0: [0.1]}})
    verdict = report.compare(frame, {"condition": "guided"}, {"condition": "baseline"},
                             claim="c")
    assert verdict.effect == pytest.approx(80.0)
    assert math.isnan(verdict.low) and verdict.label == "inconclusive"


def test_compare_refuses_an_empty_selection():
    frame = _frame({"guided": {0: [0.9, 0.8]}})
    with pytest.raises(ValueError, match="0 baseline rows"):
        report.compare(frame, {"condition": "guided"}, {"condition": "nope"}, claim="c")


def test_accuracy_table_in_points():
    frame = pd.DataFrame({"method": ["DM"] * 4, "ipc": [1, 1, 10, 10],
                          "accuracy": [0.5, 0.7, 0.8, 0.8]})
    table = report.accuracy_table(frame, rows=["method"], columns=["ipc"])
    assert list(table.columns) == ["method", "ipc 1", "ipc 10"]
    assert table.loc[0, "ipc 1"] == "60.00 ± 14.14 (n=2)"
    assert table.loc[0, "ipc 10"] == "80.00 ± 0.00 (n=2)"
    markdown = report.to_markdown(table)
    assert markdown.splitlines()[0] == "| method | ipc 1 | ipc 10 |"
    latex = report.to_latex(table, caption="Accuracy (%) & more")
    assert "\\toprule" in latex and "Accuracy (\\%) \\& more" in latex


def test_report_files_and_index(tmp_path):
    frame = _frame({"a": {0: [0.5, 0.6]}, "b": {0: [0.4, 0.45]}})
    rep = report.Report("01_test", "unit", title="Test", question="Q?", directory=tmp_path)
    fig = report.accuracy_plot(frame, x="condition")
    paths = rep.figure(fig)
    table_paths = rep.table(report.accuracy_table(frame, rows=["condition"]), caption="cap")
    verdict = rep.verdict(report.compare(frame, {"condition": "a"}, {"condition": "b"},
                                         claim="a beats b"))
    rep.write()
    for path in [*paths, *table_paths]:
        assert path.is_file() and path.stat().st_size > 0
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    stored = json.loads((tmp_path / "01_test.verdicts.json").read_text())
    assert stored[0]["label"] == verdict.label and stored[0]["claim"] == "a beats b"
    history = report.record_batch(tmp_path, {"date": "today", "wall seconds": 12.5})
    index = report.write_index(tmp_path, "unit", ["01_test", "02_missing"], {"machine": "m"},
                               history).read_text()
    assert "![01_test](01_test.png)" in index and "| cap" not in index
    assert "a beats b" in index and f"**{verdict.label}**" in index
    assert "(no results yet" in index and "| today | 12.5 |" in index
    assert report.RULE in index
