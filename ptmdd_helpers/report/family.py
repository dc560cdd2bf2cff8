"""A batch's claims as one family: Holm's step-down decisions over their p-values, and the pairs of
claims that share runs, distillations as well as evaluations (so a reader sees which claims are
not independent)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def holm(p_values: Sequence[float], level: float = 0.05) -> list[bool]:
    """Holm's step-down rejections at family-wise ``level``. A NaN p-value (a claim without an
    interval) is never rejected but still counts in the family's size (conservative)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, (p, index) in enumerate(order):
        if p > level / (m - rank):
            break
        rejected[index] = True
    return rejected


def family_decisions(verdicts: Sequence[Mapping[str, Any]], level: float = 0.05) -> list[str]:
    """Holm's decision per verdict (as dicts): 'supported' / 'not supported' where its null is
    rejected (by the side the effect lies on), else 'inconclusive'."""
    rejected = holm([float(v["p_value"]) for v in verdicts], level)
    labels = []
    for verdict, reject in zip(verdicts, rejected, strict=True):
        if verdict["relation"] == "equivalent":  # TOST: a rejection means within the bounds
            labels.append("supported" if reject else "inconclusive")
            continue
        null = -float(verdict["margin"]) if verdict["relation"] == ">=" else 0.0
        above = float(verdict["effect"]) > null
        wanted_above = verdict["relation"] in (">", ">=")
        labels.append("inconclusive" if not reject else
                      "supported" if above == wanted_above else "not supported")
    return labels


def shared_runs(verdicts: Sequence[Mapping[str, Any]]) -> list[tuple[int, int, int, int]]:
    """(i, j, sets, evaluations) for every pair of verdicts that share runs: how many of the same
    trained-on sets (distillations, real subsets: ``subjects``) and of the same evaluation runs
    (``runs``) they use. Re-evaluating a distillation elsewhere (another architecture) shares the
    set, not the evaluation."""
    pairs = []
    for i, first in enumerate(verdicts):
        for j in range(i + 1, len(verdicts)):
            sets = len(set(first.get("subjects", ())) & set(verdicts[j].get("subjects", ())))
            evaluations = len(set(first.get("runs", ())) & set(verdicts[j].get("runs", ())))
            if sets or evaluations:
                pairs.append((i, j, sets, evaluations))
    return pairs
