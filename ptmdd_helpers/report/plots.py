"""Figures of the study: accuracy against a condition, the PTM epoch or α, and the paired
differences behind each verdict. Every error bar is the sample SD (ddof 1) over distillation seeds
of the per-seed mean accuracy (:mod:`~ptmdd_helpers.spread`); accuracies in a study frame are
fractions, the figures show points (percent)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..spread import mean_sd
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


def _first_per_class(images: Any, labels: Any, classes: int) -> list[Any]:
    """The first image of each class (``None`` where a class has none)."""
    found = []
    for c in range(classes):
        index = (labels == c).nonzero()
        found.append(images[int(index[0])] if len(index) else None)
    return found


def synthetic_images_plot(sets: Sequence[dict], title: str = "") -> Figure:
    """The synthetic sets of one seed (rows; first image per class), then baseline − guided.

    ``sets`` as :func:`ptmdd_helpers.study.synthetic_sets` returns them. The lower block shows,
    per guided set, the baseline's image minus the guided one (same method), pixel values after
    denormalization averaged over channels, on a diverging map centred at 0. Each block is one
    mosaic (one image per panel, not one axes per image: hundreds of axes take seconds to draw).
    """
    import matplotlib.pyplot as plt
    import torch

    from ..data.datasets import get_info

    info = get_info(sets[0]["dataset"])
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    shown = [[None if im is None else (im.float() * std + mean).clamp(0, 1) for im in
              _first_per_class(s["images"], s["labels"], info.num_classes)] for s in sets]
    baselines = {s["method"]: row for s, row in zip(sets, shown, strict=True) if s["baseline"]}
    diffs = [(s, [None if a is None or b is None else (a - b).mean(0) for a, b in
                  zip(baselines[s["method"]], row, strict=True)])
             for s, row in zip(sets, shown, strict=True)
             if not s["baseline"] and s["method"] in baselines]
    largest = max([float(d.abs().max()) for _, row in diffs for d in row if d is not None] + [1e-6])
    cols = info.num_classes
    height, width = info.image_size
    fig, axes = plt.subplots(
        2 if diffs else 1, 1, squeeze=False, height_ratios=[len(sets), len(diffs)] if diffs else None,
        figsize=(0.9 * cols + 1.6, 0.95 * (len(sets) + len(diffs)) + 0.6), layout="constrained")
    top = _mosaic([[None if im is None else im.permute(1, 2, 0) for im in row] for row in shown],
                  height, width, fill=1.0)
    axes[0][0].imshow(top.squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
    _label_mosaic(axes[0][0], [s["label"] for s in sets], height, width)
    axes[0][0].set_xticks([(width + _GAP) * c + width / 2 for c in range(cols)])
    axes[0][0].set_xticklabels([str(name)[:10] for name in info.class_names[:cols]], fontsize=7)
    axes[0][0].xaxis.tick_top()
    if diffs:
        cmap = plt.get_cmap("RdBu_r").copy()
        cmap.set_bad("white")
        bottom = _mosaic([[None if d is None else d.unsqueeze(-1) for d in row] for _, row in diffs],
                         height, width, fill=float("nan"))
        image = axes[1][0].imshow(bottom.squeeze(-1).numpy(), cmap=cmap, vmin=-largest,
                                  vmax=largest)
        _label_mosaic(axes[1][0], [f"baseline − {s['label']}" for s, _ in diffs], height, width)
        axes[1][0].set_xticks([])
        fig.colorbar(image, ax=axes[1][0], shrink=0.8, label="pixel difference")
    fig.suptitle(title or "Synthetic images (one seed), and what the guidance changed",
                 fontsize=9)
    return fig


_GAP = 1  # pixels between the panels of a mosaic (of 8×8 to 64×64 images)


def _mosaic(rows: Sequence[Sequence[Any]], height: int, width: int, fill: float) -> Any:
    """One (H', W', C) tensor of ``rows`` of (H, W, C) panels, ``fill`` between and for ``None``."""
    import torch

    channels = next(p.shape[-1] for row in rows for p in row if p is not None)
    cols = max(len(row) for row in rows)
    out = torch.full((len(rows) * (height + _GAP) - _GAP, cols * (width + _GAP) - _GAP, channels),
                     fill)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            if panel is not None:
                y, x = r * (height + _GAP), c * (width + _GAP)
                out[y:y + height, x:x + width] = panel
    return out


def _label_mosaic(ax: Any, labels: Sequence[str], height: int, width: int) -> None:
    """Name each row of a mosaic at its centre; no frame."""
    ax.set_yticks([(height + _GAP) * r + height / 2 for r in range(len(labels))])
    ax.set_yticklabels([_wrap(label, 18) for label in labels], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def diversity_plot(gains: pd.DataFrame, title: str = "",
                   measures: Sequence[str] = ("disagreement", "cka_distance")) -> Figure:
    """The paired gain of each pool (95 % interval) against its diversity, one panel per measure,
    with Pearson's r (Fisher-z 95 % interval, n ≥ 4) and Spearman's ρ over ≥ 3 pools."""
    import matplotlib.pyplot as plt

    from ..pools.diversity import gain_correlation

    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.4), squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=True):
        x, y = gains[measure].to_numpy(float), gains["gain"].to_numpy(float)
        below = y - gains["low"].to_numpy(float)
        above = gains["high"].to_numpy(float) - y
        ax.errorbar(x, y, yerr=[below, above], fmt="o", capsize=3)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel({"disagreement": "prediction disagreement (pairs of members)",
                       "cka_distance": "1 − linear CKA of features (pairs)"}.get(measure, measure))
        ax.set_ylabel("gain over the baseline (points)")
        if len(gains) >= 3 and len(set(x)) > 1:
            corr = gain_correlation(y, x)
            interval = (f" [{corr['low']:+.2f}, {corr['high']:+.2f}]" if corr["low"] is not None
                        else " (no interval: n < 4)")
            ax.set_title(f"r = {corr['r']:+.2f}{interval}, ρ = {corr['rho']:+.2f}, "
                         f"n = {corr['n']} pools", fontsize=8)
        else:
            ax.set_title(f"{len(gains)} pools: too few for a correlation (needs 3)", fontsize=8)
    fig.suptitle(title or "Gain against pool diversity", fontsize=9)
    fig.tight_layout()
    return fig
