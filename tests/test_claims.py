"""Claims on hand-made frames against scipy: superiority, non-inferiority and equivalence (TOST)
decisions, declared margins, shared distillations across claims, and the transfer gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ptmdd_helpers.report.claims import declared, transfer_gap, transfer_table
from ptmdd_helpers.report.family import family_decisions, shared_runs
from ptmdd_helpers.report.verdicts import SEED, compare

SEEDS = list(range(10))


def paired_frame(baseline: np.ndarray, treatment: np.ndarray, nets: int = 3,
                 shared_baseline_ids: bool = False) -> pd.DataFrame:
    """Rows of networks whose per-seed means are exactly ``baseline`` / ``treatment`` (points)."""
    rows = []
    spread = np.linspace(-1.0, 1.0, nets)  # mean 0 over a set's networks
    for condition, values in (("baseline", baseline), ("treatment", treatment)):
        for seed, value in zip(SEEDS, values, strict=True):
            subject = f"distill-{condition}-{seed}"
            for k in range(nets):
                rows.append({"condition": condition, SEED: seed,
                             "accuracy": (value + spread[k]) / 100.0,
                             "run_id": f"eval-{condition}-{seed}", "subject_id": subject})
    return pd.DataFrame(rows)


@pytest.fixture
def draws() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    base = 70.0 + rng.normal(0.0, 1.0, len(SEEDS))
    return base, base + 0.05 + rng.normal(0.0, 0.1, len(SEEDS))


def test_superiority_is_ttest_rel(draws):
    base, treated = draws
    frame = paired_frame(base, treated + 0.3)
    verdict = compare(frame, {"condition": "treatment"}, {"condition": "baseline"}, claim="t > b")
    expected = stats.ttest_rel(treated + 0.3, base)
    assert verdict.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    low, high = expected.confidence_interval(0.95)
    assert (verdict.low, verdict.high) == pytest.approx((low, high), rel=1e-9)
    assert verdict.label == "supported" and low > 0


def test_non_inferiority_shifts_the_null_by_the_margin(draws):
    base, treated = draws
    frame = paired_frame(base, treated - 0.1)
    verdict = compare(frame, {"condition": "treatment"}, {"condition": "baseline"},
                      claim="t >= b", relation=">=", margin=0.15)
    shifted = stats.ttest_rel(treated - 0.1 + 0.15, base)
    assert verdict.p_value == pytest.approx(shifted.pvalue, rel=1e-9)
    assert verdict.label == ("supported" if verdict.low > -0.15 else "inconclusive")


@pytest.mark.parametrize("shift, margin, label", [
    (0.0, 0.25, "supported"),       # a small effect well inside ±0.25
    (0.0, 0.02, "inconclusive"),    # the interval is wider than ±0.02
    (1.0, 0.25, "not supported"),   # a clear effect beyond the bound
])
def test_equivalence_is_two_one_sided_tests(draws, shift, margin, label):
    base, treated = draws
    treated = treated + shift
    frame = paired_frame(base, treated)
    verdict = compare(frame, {"condition": "treatment"}, {"condition": "baseline"},
                      claim="t ≈ b", relation="equivalent", margin=margin)
    lower = stats.ttest_rel(treated + margin, base, alternative="greater").pvalue
    upper = stats.ttest_rel(treated - margin, base, alternative="less").pvalue
    assert verdict.p_value == pytest.approx(max(lower, upper), rel=1e-9)
    low90, high90 = stats.ttest_rel(treated, base).confidence_interval(0.90)
    assert (verdict.tost_low, verdict.tost_high) == pytest.approx((low90, high90), rel=1e-9)
    assert verdict.label == label
    # TOST at 5 % and "the 90 % interval inside the bounds" are one decision
    assert (verdict.label == "supported") == (max(lower, upper) < 0.05)
    holm = family_decisions([verdict.as_dict()])[0]
    assert holm == ("supported" if max(lower, upper) < 0.05 else "inconclusive")


def test_a_margin_claim_without_a_declared_margin_is_refused(draws):
    frame = paired_frame(*draws)
    for relation in (">=", "equivalent"):
        with pytest.raises(ValueError, match="margin"):
            compare(frame, {"condition": "treatment"}, {"condition": "baseline"}, claim="c",
                    relation=relation)
    with pytest.raises(ValueError, match="unknown relation"):
        compare(frame, {"condition": "treatment"}, {"condition": "baseline"}, claim="c",
                relation="≈")


def test_declared_reads_the_profile_and_names_what_is_missing():
    params = {"claims": {"early_vs_final": {"relation": ">=", "margin": 0.1, "why": "w"},
                         "bad": {"relation": "equivalent"}}}
    assert declared(params, "early_vs_final") == {"relation": ">=", "margin": 0.1}
    with pytest.raises(ValueError, match="claims.bad"):
        declared(params, "bad")
    with pytest.raises(ValueError, match="declares no claim 'other'"):
        declared(params, "other")


def test_claims_sharing_distillations_are_flagged_even_when_evaluated_apart(draws):
    base, treated = draws
    first = paired_frame(base, treated)
    # the same distillations evaluated again elsewhere (06: another architecture): new
    # evaluation runs, the same trained-on sets
    second = first.assign(run_id=first["run_id"] + "-other-arch")
    unrelated = paired_frame(base, treated).assign(
        subject_id=lambda f: f["subject_id"] + "-x", run_id=lambda f: f["run_id"] + "-x")
    verdicts = [compare(f, {"condition": "treatment"}, {"condition": "baseline"}, claim=str(i))
                for i, f in enumerate((first, second, unrelated))]
    assert shared_runs([v.as_dict() for v in verdicts]) == [(0, 1, 20, 0)]


def test_transfer_gap_and_per_architecture_gains():
    rng = np.random.default_rng(3)
    # per seed and architecture: the baseline, and a gain of 1.0 at home, 0.4 elsewhere
    rows = []
    for seed in SEEDS:
        for arch, gain in (("ConvNetW32", 1.0), ("AlexNet", 0.4), ("VGG11", 0.4)):
            base = 60.0 + rng.normal(0.0, 1.0)
            noise = rng.normal(0.0, 0.2)
            for condition, value in (("baseline", base), ("+CLoM", base + gain + noise)):
                rows += [{"arch": arch, "condition": condition, SEED: seed,
                          "accuracy": value / 100.0, "run_id": f"{arch}{condition}{seed}"}] * 5
    frame = pd.DataFrame(rows)
    t, b = {"condition": "+CLoM"}, {"condition": "baseline"}
    gap = transfer_gap(frame, t, b, home="ConvNetW32")
    per = (frame.assign(points=frame.accuracy * 100)
           .groupby(["arch", "condition", SEED])["points"].mean().unstack("condition"))
    gains = (per["+CLoM"] - per["baseline"]).unstack("arch")
    manual = gains[["AlexNet", "VGG11"]].mean(axis=1) - gains["ConvNetW32"]
    expected = stats.ttest_rel(manual, np.zeros(len(manual)))
    assert gap.effect == pytest.approx(manual.mean(), rel=1e-9)
    assert gap.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert gap.high < 0  # the gain shrinks away from the distillation architecture
    table = transfer_table(frame, t, b, home="ConvNetW32")
    assert list(table["architecture"])[:3] == ["ConvNetW32", "AlexNet", "VGG11"]
    assert list(table["role"]) == ["distillation architecture", "unseen", "unseen", "transfer",
                                   "gap"]
    unseen = table.set_index("architecture").loc["unseen architectures (mean)", "gain (points)"]
    assert unseen == pytest.approx(gains[["AlexNet", "VGG11"]].mean(axis=1).mean(), abs=0.006)
    assert set(table["networks per set"].iloc[:3]) == {5}
