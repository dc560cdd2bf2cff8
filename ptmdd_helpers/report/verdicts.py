"""Verdicts of the study's claims: paired by seed, one family per batch, and a planning aid.

The unit of every verdict is the distillation seed. Per seed, the accuracies of the evaluation
networks trained on one synthetic set are averaged (and, with ``average=["arch"]`` as in 06, the
per-architecture means are averaged next: the same sets evaluated on several architectures are
one unit, not several). Conditions compared at one seed share every random stream but the
condition itself (common random numbers), so the comparison is **paired**: within each stratum
(e.g. method and IPC) the treatment − baseline difference is taken seed by seed, and the 95 %
t-interval is computed on those differences (equal weights over strata; with one stratum it is
:func:`scipy.stats.ttest_rel`'s). Groups that share fewer than 2 seeds in a stratum (e.g.
different targets) are compared **unpaired**, with Welch's interval over seeds, and the verdict
says so. A group with fewer than 2 seeds gets no interval: "inconclusive (fewer than 2 seeds)".

A claim is one of: superiority (``>``, ``<``), non-inferiority (``>=`` with a margin δ: not worse
by more than δ) or equivalence (``equivalent`` with bounds ±δ: two one-sided tests, TOST, at 5 %,
i.e. the 90 % interval inside (−δ, +δ)); margins and bounds are declared before the run (the
profile's ``claims``), never defaulted. Each verdict carries its p-value at the claim's
no-effect point (two-sided at 0 or −δ; for equivalence the larger TOST one-sided p-value), so
that :func:`~.family.family_decisions` can apply Holm's step-down procedure over all claims of a
batch, and :func:`~.intervals.seeds_needed`, the number of seeds at which the interval's half-width would
fall below the observed distance from that point (a planning aid computed from the observed SD,
not a power analysis).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ..spread import sample_variance
from .intervals import (
    LEVEL,
    NEEDS_MARGIN,
    RELATIONS,
    claim_p_value,
    decide,
    paired_interval,
    seeds_needed,
    welch_interval,
)

ACCURACY = "accuracy"
SEED = "subject.seed"
FEWER_THAN_TWO = "inconclusive (fewer than 2 seeds)"

RULE = (
    "unit = distillation seed (mean over its evaluation networks, and in 06 over evaluation "
    "architectures). effect = treatment − baseline in accuracy points; paired by seed within each "
    "stratum (common random numbers), 95 % t-interval on the per-seed differences, strata weighted "
    "equally; Welch over seeds when the groups share no seeds (said as 'unpaired'); no interval "
    "with fewer than 2 seeds. Claim 'treatment > baseline': supported if the interval's lower "
    "bound > 0, not supported if its upper bound < 0, else inconclusive. Claim 'treatment ≥ "
    "baseline' (not worse by more than a margin δ): supported if lower bound > −δ, not supported "
    "if upper bound < −δ. Claim 'treatment ≈ baseline' (equivalent within ±δ, TOST at 5 %): "
    "supported if the 90 % interval lies inside (−δ, +δ), not supported if the 95 % interval lies "
    "outside [−δ, +δ], else inconclusive. Margins and bounds are declared in the profile before "
    "the run. 'raw' is that decision; 'Holm' is Holm's step-down decision at a "
    "family-wise 5 % over all claims of the batch (two-sided p-values at the no-effect point)."
)


@dataclass(repr=False)
class Verdict:
    """The outcome of one claim: effect, paired 95 % interval, decision and how it was computed."""

    claim: str
    treatment: str
    baseline: str
    relation: str
    margin: float
    effect: float
    low: float
    high: float
    df: float
    p_value: float
    paired: bool
    unit: str
    n_treatment: int  # seeds
    n_baseline: int
    sd_paired: float | None  # SD of the per-seed differences (pooled over strata)
    sd_unpaired: float | None  # SD the difference of two independent seeds would have
    label: str
    seeds_needed: int | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)  # the sets trained on (distillations, subsets)
    tost_low: float | None = None  # equivalence: the 90 % interval (TOST at 5 %)
    tost_high: float | None = None
    holm: str | None = None
    rule: str = RULE

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN without an interval)."""
        return (self.high - self.low) / 2 if math.isfinite(self.low) else math.nan

    @property
    def null(self) -> float:
        """The no-effect point of the claim: 0, −δ for '≥ with margin δ', the nearer bound ±δ of an
        equivalence claim."""
        if self.relation == ">=":
            return -self.margin
        if self.relation == "equivalent":
            return self.margin if self.effect >= 0 else -self.margin
        return 0.0

    def text(self) -> str:
        """One paragraph: claim, effect with its interval, per-seed differences, decision."""
        relation = {">=": f"≥ (margin {self.margin:g} points)",
                    "equivalent": f"≈ (equivalent within ±{self.margin:g} points, TOST)"}.get(
            self.relation, self.relation)
        if math.isfinite(self.low):
            interval = (f"95 % CI [{self.low:+.2f}, {self.high:+.2f}] (half-width "
                        f"{self.half_width:.2f})")
            if self.tost_low is not None:
                interval += f", 90 % CI [{self.tost_low:+.2f}, {self.tost_high:+.2f}]"
        else:
            interval = "no interval (fewer than 2 seeds in a group)"
        lines = [
            f"Claim: {self.claim}",
            f"Test: {self.treatment} {relation} {self.baseline}: effect {self.effect:+.2f} points, "
            f"{interval}; {self.unit}",
        ]
        if self.sd_paired is not None:
            lines.append(f"SD of the per-seed differences {self.sd_paired:.2f} points (an "
                         f"unpaired comparison of the same runs: {self.sd_unpaired:.2f})")
        if self.differences:
            shown = ", ".join(f"{d['difference']:+.2f}" for d in self.differences)
            lines.append(f"Per-seed differences (points): {shown}")
        decision = f"Verdict: {self.label}"
        if self.holm is not None:
            decision += f" (raw 95 % interval); Holm over the batch: {self.holm}"
        lines.append(decision)
        if self.seeds_needed is not None and self.label.startswith("inconclusive"):
            distance = (f"the distance to the nearer bound, {self.margin:g} − |effect| = "
                        f"{self.margin - abs(self.effect):.2f} points (90 % interval)"
                        if self.relation == "equivalent" else
                        f"the observed distance |effect − ({self.null:+g})| = "
                        f"{abs(self.effect - self.null):.2f} points")
            lines.append(f"Planning aid: about {self.seeds_needed} seeds per stratum would bring "
                         f"the half-width below {distance}, if the SD stayed as observed")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: the decision, the effect and its interval."""
        interval = (f"[{self.low:+.2f}, {self.high:+.2f}]" if math.isfinite(self.low)
                    else "no interval")
        return (f"{self.label}: {self.treatment} vs {self.baseline}, effect {self.effect:+.2f} "
                f"points, 95 % CI {interval}")

    def __repr__(self) -> str:
        return f"<Verdict {self.summary()}>"

    def _repr_markdown_(self) -> str:
        interval = (f"[{self.low:+.2f}, {self.high:+.2f}]" if math.isfinite(self.low)
                    else "no interval (fewer than 2 seeds)")
        return (f"**{self.label}** — {self.claim}  \n{self.treatment} vs {self.baseline}: "
                f"effect {self.effect:+.2f} points, 95 % CI {interval}, {self.unit}")

    def as_dict(self) -> dict[str, Any]:
        """The verdict as plain data (JSON-friendly), with its half-width."""
        return {**asdict(self), "half_width": self.half_width}


def select(frame: pd.DataFrame, where: Mapping[str, Any] | pd.Series) -> pd.DataFrame:
    """Rows of ``frame`` whose columns equal the given values (a list/tuple: any of them)."""
    if isinstance(where, pd.Series):
        return frame[where.to_numpy()]
    keep = pd.Series(True, index=frame.index)
    for column, value in where.items():
        if column not in frame.columns:
            raise ValueError(f"no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        if isinstance(value, (list, tuple, set)):
            keep &= frame[column].isin(list(value))
        elif value is None:
            keep &= frame[column].isna()
        else:
            keep &= frame[column] == value
    return frame[keep]


def _describe(where: Mapping[str, Any] | pd.Series, name: str | None) -> str:
    if name:
        return name
    if isinstance(where, pd.Series):
        return "selection"
    return ", ".join(f"{k}={v}" for k, v in where.items())


def seed_means(
    rows: pd.DataFrame, by: Sequence[str] = (), average: Sequence[str] = (),
    value: str = ACCURACY,
) -> pd.DataFrame:
    """Per ``by`` and seed, the mean accuracy in points: over the networks first, then over the
    levels of ``average`` (e.g. evaluation architectures). Columns: ``*by``, seed, ``points``."""
    points = rows.assign(points=100.0 * rows[value].astype(float))
    inner = [*by, *average, SEED]
    per_level = points.groupby(inner, dropna=False)["points"].mean().reset_index()
    return per_level.groupby([*by, SEED], dropna=False)["points"].mean().reset_index()


def _strata_keys(treated: pd.DataFrame, base: pd.DataFrame, strata: list[str]) -> list[tuple]:
    if not strata:
        return [()]
    return sorted(set(map(tuple, treated[strata].astype(str).to_numpy())) &
                  set(map(tuple, base[strata].astype(str).to_numpy())))


def _in_stratum(rows: pd.DataFrame, strata: list[str], key: tuple) -> pd.DataFrame:
    if not strata:
        return rows
    mask = (rows[strata].astype(str) == pd.Series(key, index=strata)).all(axis=1)
    return rows[mask.to_numpy()]


def compare(
    frame: pd.DataFrame,
    treatment: Mapping[str, Any] | pd.Series,
    baseline: Mapping[str, Any] | pd.Series,
    *,
    claim: str,
    relation: str = ">",
    margin: float | None = None,
    strata: Sequence[str] = (),
    average: Sequence[str] = (),
    paired: bool = True,
    value: str = ACCURACY,
    treatment_name: str | None = None,
    baseline_name: str | None = None,
) -> Verdict:
    """Test ``claim`` (treatment ``relation`` baseline) on a study frame; see :data:`RULE`.

    ``margin``: δ of a ``>=`` (non-inferiority) or ``equivalent`` (±δ) claim, required there;
    ``strata``: columns within which seeds are matched (equal weights across strata);
    ``average``: columns averaged within a seed before comparing (06: the evaluation
    architectures); ``paired=False`` forces the unpaired (Welch) comparison.
    """
    if relation not in RELATIONS:
        raise ValueError(f"{claim!r}: unknown relation {relation!r}; valid: {', '.join(RELATIONS)}")
    if relation in NEEDS_MARGIN and not (margin is not None and margin > 0):
        raise ValueError(f"{claim!r}: a {relation!r} claim needs its margin δ > 0, declared "
                         f"before the run (the profile's claims), got {margin!r}")
    treated, base = select(frame, treatment), select(frame, baseline)
    if treated.empty or base.empty:
        raise ValueError(
            f"nothing to compare for {claim!r}: {len(treated)} treatment rows "
            f"({_describe(treatment, treatment_name)}), {len(base)} baseline rows "
            f"({_describe(baseline, baseline_name)})"
        )
    if SEED not in frame.columns:
        raise ValueError(f"the frame has no {SEED!r} column: verdicts need distillation seeds")
    strata = list(strata)
    keys = _strata_keys(treated, base, strata)
    if not keys:
        raise ValueError(f"treatment and baseline share no stratum of {strata} for {claim!r}")
    margin = float(margin) if relation in NEEDS_MARGIN else 0.0
    null = -margin if relation == ">=" else 0.0
    equivalence = relation == "equivalent"

    def distance(effect: float) -> float:
        """How far the effect is from deciding: its distance to the no-effect point, or for
        equivalence to the nearer bound (negative: outside)."""
        return margin - abs(effect) if equivalence else abs(effect - null)

    level = 1 - 2 * (1 - LEVEL) if equivalence else LEVEL  # TOST at 5 %: the 90 % interval
    per_stratum = []
    for key in keys:
        t = seed_means(_in_stratum(treated, strata, key), average=average, value=value)
        b = seed_means(_in_stratum(base, strata, key), average=average, value=value)
        per_stratum.append((key, dict(zip(t[SEED], t["points"], strict=True)),
                            dict(zip(b[SEED], b["points"], strict=True))))
    n_t = sum(len(t) for _, t, _ in per_stratum)
    n_b = sum(len(b) for _, _, b in per_stratum)
    common = [sorted(set(t) & set(b)) for _, t, b in per_stratum]
    is_paired = paired and all(len(c) >= 2 for c in common)
    few = any(min(len(t), len(b)) < 2 for _, t, b in per_stratum)
    where = (f"{len(keys)} {'stratum' if len(keys) == 1 else 'strata, equally weighted,'} by "
             f"{', '.join(strata)}" if strata else "")
    runs = sorted(set(treated.get("run_id", pd.Series(dtype=str))) |
                  set(base.get("run_id", pd.Series(dtype=str))))
    subjects = sorted(set(treated.get("subject_id", pd.Series(dtype=str)).dropna()) |
                      set(base.get("subject_id", pd.Series(dtype=str)).dropna()))
    common_fields = dict(
        claim=claim, treatment=_describe(treatment, treatment_name),
        baseline=_describe(baseline, baseline_name), relation=relation, margin=margin, runs=runs,
        subjects=subjects,
    )
    sd_unpaired = None
    if not few:
        sd_unpaired = math.sqrt(sum(sample_variance(list(t.values())) + sample_variance(list(b.values()))
                                    for _, t, b in per_stratum) / len(per_stratum))
    if is_paired:
        differences, diff_values = [], []
        for (key, t, b), seeds in zip(per_stratum, common, strict=True):
            values = [t[s] - b[s] for s in seeds]
            diff_values.append(values)
            differences += [{"stratum": ", ".join(key), "seed": int(s), "treatment": t[s],
                             "baseline": b[s], "difference": t[s] - b[s]}
                            for s in seeds]
        effect, low, high, df, variance = paired_interval(diff_values)
        inner = paired_interval(diff_values, level)[1:3] if equivalence else None
        sd_paired = math.sqrt(sum(sample_variance(v) for v in diff_values) / len(diff_values))
        dropped = n_t + n_b - 2 * sum(len(c) for c in common)
        unit = (f"paired by seed: {sum(len(c) for c in common)} seed pairs"
                + (f" ({dropped} unmatched seed means left out)" if dropped else "")
                + (f"; {where}" if where else ""))
        needed = seeds_needed(distance(effect), sd_paired**2, len(keys), level)
        return Verdict(
            **common_fields, effect=effect, low=low, high=high, df=df,
            p_value=claim_p_value(relation, margin, effect, variance, df), paired=True,
            unit=unit, n_treatment=n_t, n_baseline=n_b, sd_paired=sd_paired,
            sd_unpaired=sd_unpaired, label=decide(low, high, relation, margin, inner),
            seeds_needed=needed, differences=differences,
            tost_low=inner[0] if inner else None, tost_high=inner[1] if inner else None,
        )
    groups = [(list(t.values()), list(b.values())) for _, t, b in per_stratum]
    if few:
        effect = sum(sum(t) / len(t) - sum(b) / len(b) for t, b in groups) / len(groups)
        return Verdict(
            **common_fields, effect=effect, low=math.nan, high=math.nan, df=math.nan,
            p_value=math.nan, paired=False,
            unit=f"seeds: {n_t} vs {n_b}" + (f"; {where}" if where else ""),
            n_treatment=n_t, n_baseline=n_b, sd_paired=None, sd_unpaired=None,
            label=FEWER_THAN_TWO,
        )
    effect, low, high, df, variance = welch_interval(groups)
    inner = welch_interval(groups, level)[1:3] if equivalence else None
    needed = seeds_needed(distance(effect), sd_unpaired**2, len(keys), level)
    return Verdict(
        **common_fields, effect=effect, low=low, high=high, df=df,
        p_value=claim_p_value(relation, margin, effect, variance, df), paired=False,
        tost_low=inner[0] if inner else None, tost_high=inner[1] if inner else None,
        unit=(f"unpaired (the groups share fewer than 2 seeds): Welch over seeds, {n_t} vs "
              f"{n_b}" + (f"; {where}" if where else "")),
        n_treatment=n_t, n_baseline=n_b, sd_paired=None, sd_unpaired=sd_unpaired,
        label=decide(low, high, relation, margin, inner), seeds_needed=needed,
    )
