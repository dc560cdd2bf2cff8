"""Figures of the study: accuracy against a condition (a sweep's figures are in :mod:`.sweeps`).

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
from .figures import caption, style, suptitle, wrap
from .verdicts import ACCURACY, SEED, seed_means

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = [
    "COLUMN_LABELS", "accuracy_plot", "column_label", "level_text", "per_seed_points",
    "reference_lines", "rotate_labels", "sd_bar",
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
