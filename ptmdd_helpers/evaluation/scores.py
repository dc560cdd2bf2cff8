"""DD-Ranking's label-robust score (LRS) beside accuracy, per distillation seed.

DD-Ranking (NUS HPC AI Lab) scores a distilled set by two differences of test accuracies, all as
fractions: the hard label recovery ``HLR = acc(whole dataset) − acc(synthetic)`` (lower is better)
and the improvement over random ``IOR = acc(synthetic) − acc(random real subset of the same size)``
(higher is better). They combine into ``a = w·IOR − (1 − w)·HLR`` (``w = 0.5``), in [−1, 1], mapped
to ``LRS = (e^a − e^−1) / (e − e^−1)`` in [0, 1].

:func:`lrs_table` computes it from a study frame (one row per evaluated network) with the unit of
the verdicts, the distillation seed: a seed's accuracy is the mean over its networks, then over its
evaluation architectures. The random real subset is paired by seed; :func:`lrs_summary` gives
mean ± sample SD over seeds (:func:`ptmdd_helpers.spread.mean_sd`). ptmdd's accuracies are its own
protocol's (hard labels, final-epoch test accuracy), so its scores are comparable with each other,
not with DD-Ranking's leaderboard (docs/method.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..spread import mean_sd, plus_minus

SEED = "subject.seed"
REAL = "random real"
WHOLE = "whole dataset"
_LOW, _HIGH = math.exp(-1.0), math.e
SCORE_COLUMNS = ("acc_synthetic", "acc_real", "acc_whole", "hlr", "ior", "a", "lrs", "paired")


def label_robust_score(acc_synthetic: Any, acc_real_subset: Any, acc_whole: Any,
                       w: float = 0.5) -> dict[str, Any]:
    """HLR, IOR, a and LRS (fractions in, fractions out) of scalars or arrays (broadcast)."""
    if not 0.0 <= float(w) <= 1.0:
        raise ValueError(f"the weight w must lie in [0, 1], got {w!r}")
    synthetic, real, whole = (np.asarray(v, dtype=float)
                              for v in (acc_synthetic, acc_real_subset, acc_whole))
    hlr = whole - synthetic
    ior = synthetic - real
    a = w * ior - (1.0 - w) * hlr
    lrs = (np.exp(a) - _LOW) / (_HIGH - _LOW)
    out = {"hlr": hlr, "ior": ior, "a": a, "lrs": lrs}
    if all(np.ndim(v) == 0 for v in (acc_synthetic, acc_real_subset, acc_whole)):
        return {key: float(value) for key, value in out.items()}
    index = next((v.index for v in (acc_synthetic, acc_real_subset, acc_whole)
                  if isinstance(v, pd.Series)), None)
    if index is not None:
        return {key: pd.Series(value, index=index, name=key) for key, value in out.items()}
    return out


def _empty(by: Sequence[str], condition: str, seed: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[*by, condition, seed, *SCORE_COLUMNS])


def _seed_level(rows: pd.DataFrame, keys: list[str], value: str, arch: str | None) -> pd.DataFrame:
    """Mean of ``value`` per ``keys`` (and per ``arch`` when given): the networks' mean."""
    inner = [*keys, arch] if arch else keys
    points = rows.assign(**{value: rows[value].astype(float)})
    return points.groupby(inner, dropna=False)[value].mean().rename("acc").reset_index()


def _lookup(levels: pd.DataFrame, keys: list[str]) -> dict[tuple, float]:
    """``{(key values...): acc}`` of a :func:`_seed_level` table."""
    return {tuple(row[k] for k in keys): float(row["acc"]) for _, row in levels.iterrows()}


def lrs_table(
    frame: pd.DataFrame, *, value: str = "accuracy", by: Sequence[str] = ("method", "ipc"),
    condition: str = "condition", seed: str = SEED,
    synthetic_conditions: Iterable[str] | None = None, real: str = REAL, whole: str = WHOLE,
    arch: str = "arch", w: float = 0.5,
) -> pd.DataFrame:
    """Per ``by``, condition and seed: the accuracies, HLR, IOR, a and LRS (fractions).

    ``acc_synthetic`` is the seed's mean over its networks, then over its architectures;
    ``acc_real`` the same seed's random-real mean for the same ``by`` and architecture (the mean
    over seeds, with ``paired=False``, when that seed has none); ``acc_whole`` the whole-dataset
    mean of the same architecture (the overall mean when the whole dataset was evaluated on one
    architecture or not on this one). A frame lacking either reference gives an empty table.
    """
    by = list(by)
    needed = {value, condition, seed, *by}
    if frame is None or frame.empty or not needed <= set(frame.columns):
        return _empty(by, condition, seed)
    arch = arch if arch in frame.columns else None
    whole_rows = frame[frame[condition] == whole]
    real_rows = frame[frame[condition] == real]
    if whole_rows.empty or real_rows.empty:
        return _empty(by, condition, seed)
    if synthetic_conditions is None:
        synthetic_conditions = [c for c in pd.unique(frame[condition]) if c not in (real, whole)]
    synthetic_rows = frame[frame[condition].isin(list(synthetic_conditions))]
    if synthetic_rows.empty:
        return _empty(by, condition, seed)

    whole_overall = float(whole_rows[value].astype(float).mean())
    whole_by_arch = ({} if arch is None or whole_rows[arch].nunique() < 2
                     else whole_rows.groupby(arch)[value].mean().astype(float).to_dict())
    tail = [arch] if arch else []
    per_seed = _seed_level(real_rows, [*by, seed], value, arch)
    real_seed = _lookup(per_seed, [*by, seed, *tail])
    # a seed without its random real subset: the mean over seeds of the per-seed means
    real_mean = _lookup(_seed_level(per_seed, by, "acc", arch), [*by, *tail])

    records = []
    for key, group in _seed_level(synthetic_rows, [*by, condition, seed], value, arch).groupby(
            [*by, condition, seed], dropna=False, sort=True):
        labels = dict(zip([*by, condition, seed], key, strict=True))
        synthetic, reals, wholes, paired = [], [], [], True
        for _, level in group.iterrows():
            arch_key = (level[arch],) if arch else ()
            by_key = tuple(labels[b] for b in by)
            found = real_seed.get(by_key + (labels[seed],) + arch_key)
            if found is None:
                found, paired = real_mean.get(by_key + arch_key), False
            if found is None:
                break  # no random real subset of this method and IPC: no score
            synthetic.append(float(level["acc"]))
            reals.append(float(found))
            wholes.append(float(whole_by_arch.get(level[arch], whole_overall)
                                if arch else whole_overall))
        else:
            acc_s, acc_r, acc_w = (float(np.mean(v)) for v in (synthetic, reals, wholes))
            records.append({**labels, "acc_synthetic": acc_s, "acc_real": acc_r,
                            "acc_whole": acc_w, **label_robust_score(acc_s, acc_r, acc_w, w),
                            "paired": paired})
    if not records:
        return _empty(by, condition, seed)
    return pd.DataFrame.from_records(records, columns=[*by, condition, seed, *SCORE_COLUMNS])


def lrs_summary(table: pd.DataFrame, *, by: Sequence[str] = ("method", "ipc"),
                condition: str = "condition", scale: float = 100.0) -> pd.DataFrame:
    """Mean ± sample SD over seeds of HLR, IOR and LRS per ``by`` and condition (× ``scale``)."""
    keys = [*by, condition]
    columns = [*keys, "n", "paired", *(f"{m}_{s}" for m in ("hlr", "ior", "lrs")
                                       for s in ("mean", "sd")), "HLR", "IOR", "LRS"]
    if table is None or table.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for key, group in table.groupby(keys, dropna=False, sort=True):
        record: dict[str, Any] = dict(zip(keys, key, strict=True))
        record["n"], record["paired"] = len(group), bool(group["paired"].all())
        for metric in ("hlr", "ior", "lrs"):
            mean, sd, n = mean_sd(group[metric])
            record[f"{metric}_mean"], record[f"{metric}_sd"] = mean, sd
            record[metric.upper()] = plus_minus(mean, sd, n, scale)
        records.append(record)
    return pd.DataFrame.from_records(records, columns=columns)


__all__ = ["REAL", "SCORE_COLUMNS", "WHOLE", "label_robust_score", "lrs_summary", "lrs_table"]
