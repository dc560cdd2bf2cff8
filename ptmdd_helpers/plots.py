"""Figures of the study: accuracy against a condition, the PTM epoch or α, and the paired
differences behind each verdict. Every error bar is the sample SD (ddof 1) over distillation seeds
of the per-seed mean accuracy (:mod:`~ptmdd_helpers.spread`); accuracies in a study frame are
fractions, the figures show points (percent)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from .spread import mean_sd
from .verdicts import ACCURACY, Verdict, seed_means

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _sns():
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid")
    return sns


def per_seed_points(
    frame: pd.DataFrame, columns: Sequence[str | None], value: str = ACCURACY
) -> pd.DataFrame:
    """One row per ``columns`` level and seed: the mean over networks, as ``accuracy (%)``."""
    by = [c for c in dict.fromkeys(columns) if c]
    return seed_means(frame, by=by, value=value).rename(columns={"points": "accuracy (%)"})


def sd_bar(values: pd.Series) -> tuple[float, float]:
    """Mean ± sample SD (ddof 1) of ``values``: seaborn's ``errorbar`` for per-seed means."""
    mean, sd, _ = mean_sd(values)
    return mean - (sd or 0.0), mean + (sd or 0.0)


def accuracy_plot(
    frame: pd.DataFrame,
    x: str,
    hue: str | None = None,
    col: str | None = None,
    *,
    order: Sequence[Any] | None = None,
    hue_order: Sequence[Any] | None = None,
    references: pd.DataFrame | None = None,
    kind: str = "point",
    title: str = "",
    xlabel: str | None = None,
    value: str = ACCURACY,
    sharey: bool = False,
) -> Figure:
    """Accuracy (mean ± SD over seeds of the per-seed means) against ``x``; ``references`` draws
    dashed lines.

    ``references`` has columns ``label`` and ``accuracy`` (fraction) and, when faceting, ``col``.
    """
    sns = _sns()
    data = per_seed_points(frame, [x, hue, col], value)
    options = dict(errorbar=sd_bar, order=order, hue_order=hue_order)
    if kind == "point":
        levels = data[hue].nunique() if hue else 1
        options.update(dodge=0.3 if levels > 1 else False, markers="o", linestyles="-")
    grid = sns.catplot(data=data, x=x, y="accuracy (%)", hue=hue, col=col, kind=kind,
                       height=3.2, aspect=1.25, sharey=sharey, **options)
    palette = sns.color_palette("dark", 8)
    if references is not None and not references.empty:
        for facet, ax in grid.axes_dict.items() if col else [(None, grid.ax)]:
            refs = references if col is None or col not in references else \
                references[references[col] == facet]
            lines = [
                ax.axhline(100.0 * float(ref.accuracy), ls="--", lw=1, color=palette[i % 8],
                           label=str(ref.label))
                for i, ref in enumerate(refs.itertuples(index=False))
            ]
            if lines:
                ax.legend(handles=lines, loc="lower right", fontsize="x-small", framealpha=0.9)
    if xlabel is not None:
        grid.set_xlabels(xlabel)
    if title:
        grid.figure.suptitle(title, y=1.03)
    return grid.figure


def rotate_labels(fig: Figure, degrees: float = 35.0) -> Figure:
    """Rotate every axis' x tick labels, right-aligned to their ticks."""
    for ax in fig.axes:
        for label in ax.get_xticklabels():
            label.set_rotation(degrees)
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    return fig


def epoch_plot(
    frame: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    x: str = "ptm_epoch",
    hue: str | None = None,
    baseline: pd.DataFrame | None = None,
    title: str = "",
    value: str = ACCURACY,
) -> Figure:
    """DD accuracy against the PTM epoch, with the PTMs' own test accuracy on a second axis.

    ``curves`` has columns ``epoch`` and ``test_acc`` (fraction), one row per member and epoch;
    ``baseline`` (rows of the unguided method) is drawn as a dashed line with its ± SD band (over
    seeds, like the points).
    """
    import matplotlib.pyplot as plt

    sns = _sns()
    data = per_seed_points(frame, [x, hue], value)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    sns.lineplot(data=data, x=x, y="accuracy (%)", hue=hue, errorbar=sd_bar, marker="o", ax=ax)
    if baseline is not None and not baseline.empty:
        mean, std, _ = mean_sd(per_seed_points(baseline, [], value)["accuracy (%)"])
        std = std or 0.0
        ax.axhline(mean, ls="--", color="grey", lw=1, label="no PTM (baseline)")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, lw=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("PTM training epoch")
    ax.set_ylabel("DD test accuracy (%)")
    twin = ax.twinx()
    ptm = curves.assign(**{"PTM test accuracy (%)": 100.0 * curves["test_acc"].astype(float)})
    sns.lineplot(data=ptm, x="epoch", y="PTM test accuracy (%)", errorbar=sd_bar, color="tab:red",
                 ls=":", marker=".", ax=twin, label="PTM's own test accuracy")
    twin.set_ylabel("PTM test accuracy (%)", color="tab:red")
    twin.grid(False)
    handles, labels = [], []
    for axis in (ax, twin):
        h, lab = axis.get_legend_handles_labels()
        handles += h
        labels += lab
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    ax.legend(handles, labels, loc="best", fontsize="x-small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def scatter_plot(
    frame: pd.DataFrame, x: str, hue: str | None = None, *, log_x: bool = False, title: str = "",
    xlabel: str | None = None, value: str = ACCURACY,
) -> Figure:
    """Mean ± SD over seeds against a numeric ``x`` (e.g. α), optionally on a symlog axis."""
    import matplotlib.pyplot as plt

    sns = _sns()
    data = per_seed_points(frame, [x, hue], value)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    sns.lineplot(data=data, x=x, y="accuracy (%)", hue=hue, errorbar=sd_bar, marker="o",
                 err_style="bars", ax=ax)
    if log_x:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(left=min(-0.3, float(data[x].min()) - 0.3))
    ax.set_xlabel(xlabel or x)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def alpha_plot(
    frame: pd.DataFrame, x: str = "alpha", hue: str | None = None, *, title: str = "",
    value: str = ACCURACY,
) -> Figure:
    """Accuracy against α on a symlog axis; α = inf (the PTM loss alone) is drawn at the far right."""
    finite = frame[x][frame[x] != math.inf].astype(float)
    far = 10 * max(float(finite.max()) if len(finite) else 1.0, 1.0)
    data = frame.assign(**{x: frame[x].astype(float).replace(math.inf, far)})
    fig = scatter_plot(data, x, hue, log_x=True, title=title, xlabel="α (weight of the PTM loss)",
                       value=value)
    ax = fig.axes[0]
    if (frame[x] == math.inf).any():
        ticks = sorted(set(finite.tolist())) + [far]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks[:-1]] + ["PTM\nonly"])
    return fig


def paired_plot(verdicts: Sequence[Verdict], title: str = "") -> Figure:
    """One row per verdict: its per-seed differences (points), the effect with its 95 % interval
    (bar) and the no-effect point (dashed): what each verdict is computed from."""
    import matplotlib.pyplot as plt

    _sns()
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.65 * len(verdicts)))
    for row, verdict in enumerate(verdicts):
        y = len(verdicts) - 1 - row
        values = [d["difference"] for d in verdict.differences]
        jitter = [0.12 * (((i * 7) % 5) - 2) / 2 for i in range(len(values))]
        ax.scatter(values, [y + j for j in jitter], s=14, alpha=0.7, color="tab:blue",
                   label="per-seed difference" if row == 0 else None)
        if math.isfinite(verdict.low):
            ax.errorbar([verdict.effect], [y], xerr=[[verdict.effect - verdict.low],
                                                     [verdict.high - verdict.effect]],
                        fmt="D", color="black", capsize=4,
                        label="effect, 95 % CI" if row == 0 else None)
        ax.plot([verdict.null] * 2, [y - 0.4, y + 0.4], ls="--", color="grey", lw=1)
    ax.set_yticks(range(len(verdicts)))
    ax.set_yticklabels([_wrap(v.claim) for v in reversed(verdicts)], fontsize="x-small")
    ax.set_xlabel("treatment − baseline (accuracy points), per distillation seed")
    ax.legend(loc="best", fontsize="x-small")
    if title:
        ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int = 42) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:3])
