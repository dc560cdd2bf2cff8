"""Claims as the profile declares them before the run, and claim (4)'s transfer across architectures.

A notebook tests a claim with the relation and margin its profile section declares
(``claims: {name: {relation, margin, why}}``): :func:`declared` reads them, so a margin is never
chosen after the accuracies are seen. :func:`transfer_table` gives the treatment's gain per
evaluation architecture (paired by seed), the gain over the architectures the set was *not*
distilled with, and the transfer gap (that gain − the gain on the distillation architecture),
each with its 95 % interval; :func:`transfer_gap` is the gap as a :class:`~.verdicts.Verdict`.
:func:`method_references` sets each method's baseline beside what it should be read against: its
published number, a random real subset of the same size and the whole training set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..evaluation.scores import REAL, WHOLE
from .intervals import NEEDS_MARGIN, RELATIONS
from .verdicts import (
    ACCURACY,
    SEED,
    Verdict,
    compare,
    seed_means,
    select,
)


def declared(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``relation`` and ``margin`` of claim ``name`` from the profile's ``claims`` (for
    :func:`~.verdicts.compare`); ``ValueError`` naming the key when it is missing or incomplete."""
    claims = params.get("claims") or {}
    if name not in claims:
        raise ValueError(f"the profile declares no claim {name!r} for this notebook: add "
                         f"claims.{name}: {{relation: '>', margin: null, why: ...}} to its section "
                         f"(declared: {', '.join(claims) or 'none'})")
    entry = dict(claims[name])
    relation, margin = entry.get("relation", ">"), entry.get("margin")
    if relation not in RELATIONS:
        raise ValueError(f"claims.{name}.relation: {relation!r}; valid: {', '.join(RELATIONS)}")
    if relation in NEEDS_MARGIN and not (margin is not None and float(margin) > 0):
        raise ValueError(f"claims.{name}: a {relation!r} claim needs margin > 0 (points), "
                         f"declared with its reason in claims.{name}.why")
    return {"relation": relation, "margin": None if margin is None else float(margin)}


def _gain_frame(frame: pd.DataFrame, treatment: Mapping[str, Any], baseline: Mapping[str, Any],
                arch: str, strata: Sequence[str], value: str) -> pd.DataFrame:
    """Per stratum, seed and architecture: treatment − baseline in points (seeds in both)."""
    def means(where: Mapping[str, Any]) -> pd.Series:
        return seed_means(select(frame, where), by=[*strata, arch], value=value).set_index(
            [*strata, arch, SEED])["points"]

    gain = (means(treatment) - means(baseline)).dropna()
    return gain.rename("gain").reset_index()


def _as_rows(gains: pd.DataFrame, side: str) -> pd.DataFrame:
    """Gains as accuracy rows (fractions) labelled ``side``: what :func:`compare` reads."""
    return gains.assign(side=side, **{ACCURACY: gains["gain"] / 100.0})


def transfer_gap(
    frame: pd.DataFrame, treatment: Mapping[str, Any], baseline: Mapping[str, Any], *,
    home: str, arch: str = "arch", strata: Sequence[str] = (), value: str = ACCURACY,
    claim: str = "the gain transfers: gain on unseen architectures − gain on the distillation "
                 "architecture",
) -> Verdict:
    """Per seed, the mean gain over the evaluation architectures other than ``home`` (the
    distillation architecture) − the gain on ``home``, paired by seed (claim '>' 0: the gain
    grows when transferred; a negative effect: it shrinks)."""
    gains = _gain_frame(frame, treatment, baseline, arch, strata, value)
    unseen = gains[gains[arch] != home].groupby([*strata, SEED], dropna=False)["gain"].mean()
    at_home = gains[gains[arch] == home].set_index([*strata, SEED])["gain"]
    if unseen.empty or at_home.empty:
        raise ValueError(f"transfer gap: need gains on {home!r} and on another architecture; "
                         f"found {sorted(set(gains[arch]))}")
    rows = pd.concat([_as_rows(unseen.reset_index(), "unseen"),
                      _as_rows(at_home.reset_index(), "home")])
    return compare(rows, {"side": "unseen"}, {"side": "home"}, claim=claim, strata=strata,
                   treatment_name="gain on unseen architectures",
                   baseline_name=f"gain on {home} (the distillation architecture)")


def transfer_table(
    frame: pd.DataFrame, treatment: Mapping[str, Any], baseline: Mapping[str, Any], *,
    home: str, arch: str = "arch", strata: Sequence[str] = (), value: str = ACCURACY,
) -> pd.DataFrame:
    """One row per evaluation architecture (the gain, paired by seed, with its 95 % interval,
    seeds and networks per set), then the gain over the unseen architectures (mean over them per
    seed) and the transfer gap (:func:`transfer_gap`)."""
    rows = []

    def row(name: str, role: str, verdict: Verdict, networks: Any) -> dict[str, Any]:
        return {"architecture": name, "role": role, "gain (points)": round(verdict.effect, 2),
                "95 % CI": f"[{verdict.low:+.2f}, {verdict.high:+.2f}]",
                "seeds": verdict.n_treatment, "networks per set": networks}

    for name in sorted(set(frame[arch]), key=lambda a: (a != home, a)):
        part = frame[frame[arch] == name]
        verdict = compare(part, treatment, baseline, claim=f"gain on {name}", strata=strata,
                          value=value)
        networks = part.groupby(["run_id"]).size().min() if "run_id" in part else None
        rows.append(row(name, "distillation architecture" if name == home else "unseen",
                        verdict, networks))
    unseen = frame[frame[arch] != home]
    summary = compare(unseen, treatment, baseline, claim="gain on unseen architectures",
                      strata=strata, average=[arch], value=value)
    rows.append(row("unseen architectures (mean)", "transfer", summary, ""))
    gap = transfer_gap(frame, treatment, baseline, home=home, arch=arch, strata=strata,
                       value=value)
    rows.append(row("transfer gap (unseen − distillation architecture)", "gap", gap, ""))
    return pd.DataFrame(rows)


def verdict_table(verdicts: Sequence[Verdict], labels: Sequence[Mapping[str, Any]] = (),
                  ) -> pd.DataFrame:
    """One row per verdict: its ``labels`` (e.g. method and iteration count), the effect with its
    95 % interval, the seeds and the decision."""
    rows = []
    for index, verdict in enumerate(verdicts):
        extra = dict(labels[index]) if index < len(labels) else {}
        rows.append({**extra, "effect (points)": round(verdict.effect, 2),
                     "95 % CI": (f"[{verdict.low:+.2f}, {verdict.high:+.2f}]"
                                 if verdict.low == verdict.low else "—"),
                     "seeds": verdict.n_treatment, "verdict": verdict.label})
    return pd.DataFrame(rows)


def method_references(frame: pd.DataFrame, published: Mapping[str, float] | None = None,
                      by: str = "method", value: str = ACCURACY) -> pd.DataFrame:
    """Reference lines per level of ``by`` (columns ``by``, ``label``, ``points``): the published
    number (points), the random real subsets' and the whole training set's mean over seeds."""
    condition = frame["condition"]
    distilled = frame[~condition.isin([REAL, WHOLE])]
    whole = frame[condition == WHOLE]
    whole_points = seed_means(whole, by=[], value=value)["points"].mean() if len(whole) else None
    rows = []
    for level in pd.unique(distilled[by].dropna()):
        if published and level in published:
            rows.append({by: level, "label": "published", "points": float(published[level])})
        subset = frame[(condition == REAL) & (frame[by] == level)]
        if len(subset):
            rows.append({by: level, "label": "random real subset (mean over seeds)",
                         "points": float(seed_means(subset, by=[], value=value)["points"].mean())})
        if whole_points is not None:
            rows.append({by: level, "label": "whole training set", "points": float(whole_points)})
    return pd.DataFrame(rows, columns=[by, "label", "points"])
