"""Figures over a numeric sweep: the PTM epoch (03), α (05), any numeric column (scatter).

As in :mod:`.plots`: each tested value is a marker with ± SD over distillation seeds and the
per-seed means as small dots; nothing joins tested values (no run exists in between); α is on a
symmetric log axis, with the PTM loss alone (α = ∞) in a panel of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..spread import mean_sd
from .figures import caption, style, suptitle
from .plots import (
    POINTS,
    _dots,
    _legend,
    _levels,
    _limits,
    _references,
    _spread_caption,
    column_label,
    level_text,
    per_seed_points,
    reference_lines,
)
from .verdicts import ACCURACY

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _hue_groups(data: pd.DataFrame, x: str, hue: str | None,
                levels: Sequence[Any]) -> list[tuple[Any, list[Any], list[pd.Series]]]:
    """Per hue level: the tested ``x`` values and the per-seed points at each."""
    out = []
    for level in levels if hue else [None]:
        part = data if hue is None else data[data[hue] == level]
        xs = _levels(part[x])
        out.append((level, xs, [part.loc[part[x] == v, POINTS] for v in xs]))
    return out


def epoch_plot(
    frame: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    x: str = "ptm_epoch",
    hue: str | None = None,
    baseline: pd.DataFrame | None = None,
    title: str = "",
    value: str = ACCURACY,
    references: pd.DataFrame | Mapping[str, float] | None = None,
) -> Figure:
    """DD accuracy at each tested PTM epoch (markers, no line), the PTMs' own accuracy on a twin axis.

    ``curves`` has columns ``epoch`` and ``test_acc`` (fraction), one row per member and epoch:
    every epoch exists, so it is a (dotted) line. ``baseline`` (rows of the unguided method) is a
    dashed line with its ± SD band over seeds.
    """
    import matplotlib.pyplot as plt

    data = per_seed_points(frame, [x, hue], value)
    tested = _levels(data[x])
    gap = min((b - a for a, b in zip(tested, tested[1:], strict=False)), default=1.0)
    groups = _hue_groups(data, x, hue, _levels(frame[hue]) if hue else [])
    step = 0.12 * gap
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, ax = plt.subplots(figsize=(6.6, 4.0), layout="constrained")
        ys = [y for _, y in _references(references)]
        for h, (level, xs, values) in enumerate(groups):
            offset = (h - (len(groups) - 1) / 2) * step
            ys += _dots(ax, [float(v) + offset for v in xs], values, colors[h % len(colors)],
                        f"{level_text(level)} + PTM loss" if hue else "with the PTM loss",
                        jitter=step / 3)
        if baseline is not None and not baseline.empty:
            mean, sd, _ = mean_sd(per_seed_points(baseline, [], value)[POINTS])
            ax.axhline(mean, ls="--", color="grey", lw=1, label="no PTM loss (baseline)",
                       gid="reference")
            ax.axhspan(mean - (sd or 0.0), mean + (sd or 0.0), color="grey", alpha=0.15, lw=0)
            ys += [mean - (sd or 0.0), mean + (sd or 0.0)]
        reference_lines(ax, references)
        if ys:
            ax.set_ylim(*_limits(ys))
        ax.set_xlabel("PTM training epoch (markers: the tested epochs)")
        ax.set_ylabel("DD test accuracy (%)")
        epochs = sorted(set(tested) | set(curves["epoch"]) if len(curves) else set(tested))
        if len(tested) <= 15:
            ax.set_xticks([int(e) for e in tested])
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs:
            ax.set_xlim(min(epochs) - 0.5 * gap, max(epochs) + 0.5 * gap)
        members = 0
        if len(curves):
            twin = ax.twinx()
            points = curves.assign(p=100.0 * curves["test_acc"].astype(float))
            stats = [(e, *mean_sd(g)) for e, g in points.groupby("epoch")["p"]]
            members = max(n for *_, n in stats)
            es, ms = [e for e, *_ in stats], [m for _, m, _, _ in stats]
            sds = [sd or 0.0 for *_, sd, _ in stats]
            twin.fill_between(es, [m - s for m, s in zip(ms, sds, strict=True)],
                              [m + s for m, s in zip(ms, sds, strict=True)], color="tab:red",
                              alpha=0.1, lw=0)
            twin.plot(es, ms, ls=":", marker=".", color="tab:red", gid="ptm-curve",
                      label="PTMs' own test accuracy (right axis)")
            twin.set_ylabel("PTM test accuracy (%)", color="tab:red")
            twin.grid(False)
        _legend(fig, fig.axes, None)
        caption(fig, _spread_caption(data, [c for c in (x, hue) if c], "markers")
                + "; no line between tested epochs: nothing ran in between"
                + (f"; dotted: the PTMs' test accuracy, mean ± SD over {members} "
                   f"member{'s' if members != 1 else ''}, every epoch" if members else "")
                + ("; dashed: no PTM loss, ± SD band" if baseline is not None else ""))
        suptitle(fig, title)
    return fig


def scatter_plot(
    frame: pd.DataFrame, x: str, hue: str | None = None, *, log_x: bool = False, title: str = "",
    xlabel: str | None = None, value: str = ACCURACY,
    references: pd.DataFrame | Mapping[str, float] | None = None,
) -> Figure:
    """Mean ± SD over seeds at each tested numeric ``x`` (markers, no line), optionally symlog x."""
    import matplotlib.pyplot as plt

    data = per_seed_points(frame, [x, hue], value)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 3.8), layout="constrained")
        if log_x:
            positive = data.loc[data[x] > 0, x]
            ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
        hues = _levels(frame[hue]) if hue else []
        for h, (level, xs, values) in enumerate(_hue_groups(data, x, hue, hues)):
            _dots(ax, _dodge(ax, xs, h, max(len(hues), 1)), values,
                  colors[h % len(colors)], level_text(level) if hue else None)
        reference_lines(ax, references)
        ax.set_xlabel(xlabel or column_label(x))
        ax.set_ylabel("test accuracy (%)")
        _legend(fig, [ax], hue)
        caption(fig, _spread_caption(data, [c for c in (x, hue) if c]))
        suptitle(fig, title)
    return fig


def _dodge(ax: Axes, xs: Sequence[float], h: int, k: int, share: float = 0.025) -> list[float]:
    """``xs`` moved by the ``h``-th of ``k`` offsets, a ``share`` of the axis each, in its scale."""
    if k <= 1:
        return [float(v) for v in xs]
    transform = ax.xaxis.get_transform()
    values = [float(v) for v in xs]
    scaled = transform.transform(values)
    span = max(float(scaled.max() - scaled.min()), 1.0)
    moved = scaled + (h - (k - 1) / 2) * share * span
    return [float(v) for v in transform.inverted().transform(moved)]


def alpha_plot(
    frame: pd.DataFrame, x: str = "alpha", hue: str | None = None, *, title: str = "",
    value: str = ACCURACY, references: pd.DataFrame | Mapping[str, float] | None = None,
) -> Figure:
    """Accuracy against α on a symlog axis (markers, no line); α = ∞ (PTM loss only) in its own panel."""
    import matplotlib.pyplot as plt

    data = per_seed_points(frame, [x, hue], value)
    alphas = data[x].astype(float)
    finite, only = data[alphas != math.inf], data[alphas == math.inf]
    positive = sorted(a for a in _levels(finite[x].astype(float)) if a > 0)
    threshold = positive[0] if positive else 1.0
    hues = _levels(frame[hue]) if hue else [None]
    k = len(hues)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, axes = plt.subplots(1, 2 if len(only) else 1, sharey=True, squeeze=False,
                                 figsize=(6.8 if len(only) else 5.8, 4.0), layout="constrained",
                                 width_ratios=[4, 1] if len(only) else None)
        ax = axes[0][0]
        ax.set_xscale("symlog", linthresh=threshold, linscale=0.6)
        for h, level in enumerate(hues):
            color, label = colors[h % len(colors)], level_text(level) if hue else None
            part = finite if hue is None else finite[finite[hue] == level]
            xs = _levels(part[x].astype(float))
            if xs:
                _dots(ax, _dodge(ax, xs, h, k), [part.loc[part[x] == v, POINTS] for v in xs],
                      color, label)
            rest = only if hue is None else only[only[hue] == level]
            if len(rest):
                _dots(axes[0][1], [(h - (k - 1) / 2) * 0.15], [rest[POINTS]], color,
                      None if xs else label, jitter=0.04)
        ticks = _levels(finite[x].astype(float))
        ax.set_xticks(ticks)
        ax.set_xticklabels(["0\n(no PTM loss)" if t == 0 else level_text(t) for t in ticks])
        ax.minorticks_off()
        if ticks:
            ax.set_xlim(min(ticks) - 0.6 * threshold, max(ticks) * 2.5 if max(ticks) > 0 else 1)
        ax.set_xlabel("α, the weight of the PTM loss (symmetric log axis)")
        ax.set_ylabel("test accuracy (%)")
        for panel in axes[0]:
            reference_lines(panel, references)
        if len(only):
            side = axes[0][1]
            side.set_xticks([0])
            side.set_xticklabels(["PTM loss\nonly (α = ∞)"])
            side.set_xlim(-0.5, 0.5)
            side.set_xlabel("no DD loss")
        _legend(fig, axes[0], hue)
        caption(fig, _spread_caption(data, [c for c in (x, hue) if c])
                + f"; α is linear below {level_text(threshold)}"
                + ("; right: the PTM loss alone, apart from the α axis" if len(only) else ""))
        suptitle(fig, title)
    return fig
