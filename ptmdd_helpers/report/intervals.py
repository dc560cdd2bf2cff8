"""Intervals, p-values and decisions on per-seed numbers: the arithmetic under the verdicts.

Pure functions of lists of numbers (no frames): the paired interval (equal weights over strata;
one stratum gives :func:`scipy.stats.ttest_rel`'s), Welch's unpaired interval, a claim's p-value
at its no-effect point (TOST for equivalence), the decision for a claim's relation and margin,
and the planning aid :func:`seeds_needed`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..spread import sample_variance

LEVEL = 0.95
RELATIONS = (">", "<", ">=", "equivalent")
NEEDS_MARGIN = (">=", "equivalent")


def _t_quantile(df: float, level: float = LEVEL) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def _p_value(effect: float, null: float, variance: float, df: float) -> float:
    from scipy import stats

    if variance == 0.0:
        return 0.0 if effect != null else 1.0
    return float(2 * stats.t.sf(abs(effect - null) / math.sqrt(variance), df))


def tost_p_value(effect: float, margin: float, variance: float, df: float) -> float:
    """The TOST p-value of 'equivalent within ±margin': the larger of the one-sided p-values of
    H0 effect ≤ −margin and H0 effect ≥ +margin."""
    from scipy import stats

    if variance == 0.0:
        return 0.0 if abs(effect) < margin else 1.0
    se = math.sqrt(variance)
    return float(max(stats.t.sf((effect + margin) / se, df),
                     stats.t.sf((margin - effect) / se, df)))


def claim_p_value(relation: str, margin: float, effect: float, variance: float,
                  df: float) -> float:
    """The p-value of a claim at its no-effect point (TOST for ``equivalent``)."""
    if relation == "equivalent":
        return tost_p_value(effect, margin, variance, df)
    return _p_value(effect, -margin if relation == ">=" else 0.0, variance, df)


def paired_interval(
    differences: Sequence[Sequence[float]], level: float = LEVEL
) -> tuple[float, float, float, float, float]:
    """(effect, low, high, df, variance) of the equal-weight mean over strata of the mean
    per-seed difference; one stratum gives ``scipy.stats.ttest_rel``'s interval."""
    k = len(differences)
    effect = sum(sum(d) / len(d) for d in differences) / k
    parts = [sample_variance(d) / len(d) / k**2 for d in differences]
    variance = sum(parts)
    if variance == 0.0:
        return effect, effect, effect, math.inf, 0.0
    df = variance**2 / sum(p**2 / (len(d) - 1) for p, d in zip(parts, differences, strict=True))
    half = _t_quantile(df, level) * math.sqrt(variance)
    return effect, effect - half, effect + half, df, variance


def welch_interval(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]], level: float = LEVEL
) -> tuple[float, float, float, float, float]:
    """(effect, low, high, df, variance) for the equal-weight mean over strata of
    mean(treatment) − mean(baseline), unpaired (Welch–Satterthwaite degrees of freedom)."""
    k = len(groups)
    effect = sum(sum(t) / len(t) - sum(b) / len(b) for t, b in groups) / k
    parts = [(sample_variance(v) / len(v) / k**2, len(v)) for t, b in groups for v in (t, b)]
    variance = sum(p for p, _ in parts)
    if variance == 0.0:
        return effect, effect, effect, math.inf, 0.0
    df = variance**2 / sum(p**2 / (n - 1) for p, n in parts)
    half = _t_quantile(df, level) * math.sqrt(variance)
    return effect, effect - half, effect + half, df, variance


def decide(low: float, high: float, relation: str = ">", margin: float = 0.0,
           inner: tuple[float, float] | None = None) -> str:
    """The verdict label for a 95 % interval [low, high] and a claim ``>``, ``<``, ``>=`` or
    ``equivalent`` (``inner``: its 90 % interval, the TOST decision at 5 %)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if relation == "equivalent":
        low90, high90 = inner if inner is not None else (low, high)
        if -margin < low90 and high90 < margin:
            return "supported"
        return "not supported" if low > margin or high < -margin else "inconclusive"
    if relation == ">":
        return "supported" if low > 0 else "not supported" if high < 0 else "inconclusive"
    if relation == "<":
        return "supported" if high < 0 else "not supported" if low > 0 else "inconclusive"
    if relation == ">=":
        return ("supported" if low > -margin else
                "not supported" if high < -margin else "inconclusive")
    raise ValueError(f"unknown relation {relation!r}; valid: {', '.join(RELATIONS)}")


def seeds_needed(
    distance: float, variance_per_seed: float, strata: int = 1, level: float = LEVEL,
    limit: int = 10_000,
) -> int | None:
    """Seeds per stratum at which the interval's half-width, t(df) · sqrt(v / (n · strata)) with
    df = strata · (n − 1), would fall below ``distance``; ``None`` if beyond ``limit``."""
    if distance <= 0:
        return None
    if variance_per_seed == 0:
        return 2
    for n in range(2, limit + 1):
        half = _t_quantile(strata * (n - 1), level) * math.sqrt(variance_per_seed / (n * strata))
        if half < distance:
            return n
    return None
