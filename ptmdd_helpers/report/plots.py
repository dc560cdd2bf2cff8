"""Figures of the study: accuracy against a condition, the PTM epoch or α.

Each condition is a dot (the mean over distillation seeds of the per-seed mean accuracy) with an
error bar of ± the sample SD (ddof 1) over those seeds (:mod:`~ptmdd_helpers.spread`), and the
per-seed means as small dots; the figure says so in a caption. That spread is unpaired: the
verdicts (:mod:`.verdicts`, :func:`paired_difference_plot`) compare conditions seed by seed.
Points are never joined by a line where no run exists (between categories, untested PTM epochs
or values of α); y axes are scaled to the data, not from zero; ``references`` (published
results, random real images, the whole dataset) are labelled dashed lines. Accuracies in a study
frame are fractions, the figures show points (percent)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..spread import mean_sd
from .figures import (
    caption,
    diversity_plot,
    paired_difference_plot,
    paired_plot,
    style,
    suptitle,
    synthetic_images_plot,
    texts_outside,
    wrap,
)
from .verdicts import ACCURACY, SEED, seed_means

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = [
    "COLUMN_LABELS", "accuracy_plot", "alpha_plot", "column_label", "diversity_plot",
    "epoch_plot", "level_text", "paired_difference_plot", "paired_plot", "per_seed_points",
    "reference_lines", "rotate_labels", "scatter_plot", "sd_bar", "synthetic_images_plot",
    "texts_outside",
]

COLUMN_LABELS = {
    "ipc": "IPC", "ptm_source": "PTM source", "n_models": "PTMs (initializations)",
    "arch": "architecture", "ptm_epoch": "PTM epoch", "alpha": "α", "n_archs": "architectures",
    "pool": "PTM pool", "target": "target dataset", "method": "method", "condition": "condition",
}
POINTS = "accuracy (%)"
_REFERENCE_COLORS = ("#8c564b", "0.2", "#bcbd22", "#17becf", "#e377c2", "#7f7f7f")


def column_label(column: str) -> str:
    """A readable name for a frame column: :data:`COLUMN_LABELS`, else underscores as spaces."""
    return COLUMN_LABELS.get(column, str(column).replace("_", " "))


def level_text(value: Any) -> str:
    """A level as text: whole floats as integers (IPC 1, not 1.0), other floats as ``%g``."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        value = float(value)
        return "∞" if value == math.inf else str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _facet_title(column: str, value: Any) -> str:
    if column in ("method", "arch", "condition", "pool"):
        return level_text(value)
    separator = " " if isinstance(value, numbers.Real) else ": "
    return f"{column_label(column)}{separator}{level_text(value)}"


def _levels(series: pd.Series) -> list[Any]:
    """Sorted levels of a numeric column, else the levels in order of appearance."""
    levels = list(pd.unique(series.dropna()))
    return sorted(levels) if pd.api.types.is_numeric_dtype(series) else levels


def per_seed_points(
    frame: pd.DataFrame, columns: Sequence[str | None], value: str = ACCURACY
) -> pd.DataFrame:
    """One row per ``columns`` level and seed: the mean over networks, as ``accuracy (%)``."""
    by = [c for c in dict.fromkeys(columns) if c]
    return seed_means(frame, by=by, value=value).rename(columns={"points": POINTS})


def sd_bar(values: pd.Series) -> tuple[float, float]:
    """Mean ± sample SD (ddof 1) of ``values``: seaborn's ``errorbar`` for per-seed means."""
    mean, sd, _ = mean_sd(values)
    return mean - (sd or 0.0), mean + (sd or 0.0)


def _spread_caption(data: pd.DataFrame, keys: Sequence[str], what: str = "dots") -> str:
    counts = data.groupby(list(keys), dropna=False)[SEED].nunique() if keys else \
        pd.Series([data[SEED].nunique()])
    low, high = int(counts.min()), int(counts.max())
    n = f"{low}" if low == high else f"{low}–{high}"
    return (f"{what}: mean ± SD over {n} distillation seeds (unpaired spread; the verdicts are "
            f"paired by seed); small dots: the per-seed means")


def _references(references: pd.DataFrame | Mapping[str, float] | None,
                facet: tuple[str, Any] | None = None) -> list[tuple[str, float]]:
    """(label, points) of ``references``: a frame with ``label`` and ``accuracy`` (fraction) or
    ``points`` (and optionally the facet column), or a mapping label → accuracy (fraction)."""
    if references is None:
        return []
    if isinstance(references, Mapping):
        return [(str(k), 100.0 * float(v)) for k, v in references.items()]
    rows = references
    if facet is not None and facet[0] in rows:
        rows = rows[rows[facet[0]] == facet[1]]
    points = rows["points"] if "points" in rows else 100.0 * rows[ACCURACY].astype(float)
    return [(str(label), float(p)) for label, p in zip(rows["label"], points, strict=True)]


def reference_lines(ax: Axes, references: pd.DataFrame | Mapping[str, float] | None,
                    facet: tuple[str, Any] | None = None) -> list[Line2D]:
    """Draw ``references`` as labelled dashed horizontal lines on ``ax`` (gid ``reference``)."""
    labels = list(dict.fromkeys(label for label, _ in _references(references)))
    lines = []
    for label, points in _references(references, facet):
        color = _REFERENCE_COLORS[labels.index(label) % len(_REFERENCE_COLORS)]
        lines.append(ax.axhline(points, ls="--", lw=1.1, color=color, label=label,
                                gid="reference", zorder=1))
    return lines


def _dots(ax: Axes, x: Sequence[float], groups: Sequence[pd.Series], color: Any, label: str | None,
          jitter: float = 0.0, bar_width: float | None = None) -> list[float]:
    """Mean ± SD of each group of per-seed values at ``x`` (no line between them), the values as
    small dots; bars (cut at the axis' lower limit) when ``bar_width`` is given. Returns every y
    drawn."""
    stats = [mean_sd(g) for g in groups]
    means = [m for m, _, _ in stats]
    sds = [sd or 0.0 for _, sd, _ in stats]
    if bar_width is None:
        ax.errorbar(x, means, yerr=sds, fmt="o", ms=5, ls="none", color=color, capsize=3,
                    elinewidth=1.4, label=label, zorder=3)
    else:
        ax.bar(x, means, width=bar_width, color=color,
               alpha=0.75, yerr=sds, capsize=3, label=label, zorder=2)
    seeds = [(xi + jitter * (((i * 7) % 5) - 2) / 2, v)
             for xi, g in zip(x, groups, strict=True) for i, v in enumerate(g)]
    if seeds:
        ax.scatter(*zip(*seeds, strict=True), s=8, color=color, alpha=0.35, lw=0, zorder=4)
    return [m + s * k for m, s in zip(means, sds, strict=True) for k in (-1, 1)] + \
        [v for _, v in seeds]


def _limits(values: Sequence[float], floor: float = 0.0) -> tuple[float, float]:
    """y limits around ``values`` (padded by 8 %, at least 1 point wide), never below ``floor``."""
    low, high = min(values), max(values)
    pad = 0.08 * max(high - low, 1.0)
    return max(low - pad, floor), high + pad


def _legend(fig: Figure, axes: Sequence[Axes], hue: str | None) -> None:
    """One legend right of the axes: the hue levels, then the reference lines, each under a header."""
    from matplotlib.lines import Line2D

    groups: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            is_reference = getattr(handle, "get_gid", lambda: None)() == "reference"
            groups[is_reference].setdefault(label, handle)
    headers = (column_label(hue) if hue else None, "references" if groups[0] else None)
    handles, labels, bold = [], [], []
    for header, group in zip(headers, groups, strict=True):
        if group and header:
            bold.append(len(labels))
            handles.append(Line2D([], [], ls="none"))
            labels.append(header)
        handles += list(group.values())
        labels += [wrap(label, 24) for label in group]
    if handles:
        legend = fig.legend(handles, labels, loc="outside right center", fontsize=7, frameon=False)
        for i in bold:
            legend.get_texts()[i].set_fontweight("bold")


def accuracy_plot(
    frame: pd.DataFrame,
    x: str,
    hue: str | None = None,
    col: str | None = None,
    *,
    order: Sequence[Any] | None = None,
    hue_order: Sequence[Any] | None = None,
    references: pd.DataFrame | Mapping[str, float] | None = None,
    kind: str = "point",
    title: str = "",
    xlabel: str | None = None,
    value: str = ACCURACY,
    sharey: bool = False,
) -> Figure:
    """Accuracy per level of ``x`` as dots with ± SD over seeds (``kind="bar"``: bars), y not from 0."""
    import matplotlib.pyplot as plt

    if kind not in ("point", "bar"):
        raise ValueError(f"kind must be 'point' or 'bar', not {kind!r}")
    data = per_seed_points(frame, [x, hue, col], value)
    xs = list(order) if order is not None else _levels(frame[x])
    hues = list(hue_order) if hue_order is not None else _levels(frame[hue]) if hue else [None]
    facets = _levels(frame[col]) if col else [None]
    k = len(hues)
    step = 0.8 / k if kind == "bar" else min(0.6 / k, 0.22)
    width = max(2.6, 0.6 + 0.5 * len(xs) * (1 + 0.3 * (k - 1)))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with style():
        fig, axes = plt.subplots(1, len(facets), figsize=(width * len(facets) + 1.8, 3.9),
                                 sharey=sharey, squeeze=False, layout="constrained")
        drawn: list[list[float]] = []
        for i, (ax, facet) in enumerate(zip(axes[0], facets, strict=True)):
            rows = data if col is None else data[data[col] == facet]
            ys = [y for _, y in _references(references, (col, facet) if col else None)]
            for h, level in enumerate(hues):
                part = rows if hue is None else rows[rows[hue] == level]
                at = [(j, part.loc[part[x] == xv, POINTS]) for j, xv in enumerate(xs)]
                at = [(j + (h - (k - 1) / 2) * step, g) for j, g in at if len(g)]
                if at:
                    ys += _dots(ax, [p for p, _ in at], [g for _, g in at], colors[h % len(colors)],
                                level_text(level) if hue else None, jitter=step / 3,
                                bar_width=step * 0.9 if kind == "bar" else None)
            reference_lines(ax, references, (col, facet) if col else None)
            drawn.append(ys)
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels([wrap(level_text(v), 14) for v in xs])
            ax.set_xlim(-0.5, len(xs) - 0.5)
            ax.set_xlabel(xlabel if xlabel is not None else column_label(x))
            ax.set_ylabel("test accuracy (%)" if i == 0 else "")
            if col:
                ax.set_title(_facet_title(col, facet), fontsize=8)
        for ax, ys in zip(axes[0], drawn, strict=True):
            ys = [y for group in drawn for y in group] if sharey else ys
            if ys:
                ax.set_ylim(*_limits(ys))
        _legend(fig, axes[0], hue)
        shape = "bars" if kind == "bar" else "dots"
        caption(fig, _spread_caption(data, [c for c in (x, hue, col) if c], shape)
                + ("; dashed: references" if references is not None else "")
                + ("; the y axis does not start at 0" if kind == "bar" else ""))
        suptitle(fig, title)
    return fig


def rotate_labels(fig: Figure, degrees: float = 35.0) -> Figure:
    """Rotate every axis' x tick labels, right-aligned to their ticks."""
    for ax in fig.axes:
        for label in ax.get_xticklabels():
            label.set_rotation(degrees)
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    return fig


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
                + (f"; dotted: the PTMs' test accuracy, mean ± SD over {members} members, every "
                   "epoch" if members else "")
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
