"""Figures of the verdicts and of the synthetic sets: the paired differences behind each verdict,
the synthetic images and what the guidance changed, and the gain against pool diversity.

Every figure uses a constrained layout, wraps its long labels and keeps its legend outside the
axes, so that nothing is cut or drawn over the data (:func:`texts_outside` finds what is)."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from .verdicts import Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAIRED_CAPTION = ("dots: per-seed paired differences (treatment − baseline); bar: mean with its "
                  "95 % t-interval")


def style() -> contextlib.AbstractContextManager:
    """The figures' look (seaborn's whitegrid, paper context) as a context, not a global setting."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    return plt.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("paper")})


def wrap(text: str, width: int = 42, breaks: str = " /_-") -> str:
    """``text`` wrapped at ``width`` characters, whole: lines break only after ``breaks``."""
    lines: list[str] = []
    pattern = "(?<=[" + re.escape(breaks) + "])"
    for paragraph in str(text).split("\n"):
        line = ""
        for token in re.split(pattern, paragraph.replace("_", " ")):
            if line and len(line.rstrip()) + len(token.rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            line += token
        lines.append(line.rstrip())
    return "\n".join(lines)


def caption(fig: Figure, text: str, width: float | None = None) -> None:
    """Write ``text`` under the axes of ``fig`` (a constrained layout keeps it inside)."""
    inches = width or fig.get_figwidth()
    fig.supxlabel(wrap(text, max(40, int(inches * 72 / 4.0)), " "), fontsize=6.5, color="0.25")


def suptitle(fig: Figure, text: str) -> None:
    """A figure title wrapped to the figure's width, so it is never cut at the right edge."""
    if text:
        fig.suptitle(wrap(text, max(30, int(fig.get_figwidth() * 72 / 5.4)), " "), fontsize=9)


def texts_outside(fig: Figure, tolerance: float = 1.0) -> list[str]:
    """The visible texts of ``fig`` that extend outside the figure once drawn (empty: none)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    hidden = set()  # labels of ticks outside the view: created, never drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 * (1 + abs(low)) <= tick.get_loc() <= high + 1e-9 * (1 + abs(high)):
                    hidden.update({id(tick.label1), id(tick.label2)})
    out = []
    for text in fig.findobj(Text):
        if id(text) in hidden or not text.get_visible() or not text.get_text().strip():
            continue
        extent = text.get_window_extent(renderer)
        if (extent.x0 < box.x0 - tolerance or extent.y0 < box.y0 - tolerance
                or extent.x1 > box.x1 + tolerance or extent.y1 > box.y1 + tolerance):
            out.append(text.get_text())
    return out


def margin_bounds(verdict: Verdict) -> tuple[float, ...]:
    """The claim's margin lines in points: ±δ for 'equivalent', −δ for '≥', +δ for '≤'."""
    margin = float(verdict.margin or 0.0)
    if not margin or not math.isfinite(margin):
        return ()
    return {"equivalent": (-margin, margin), ">=": (-margin,), "<=": (margin,)}.get(
        verdict.relation, ())


def _published(published: Mapping[str, float] | Sequence[float | None] | None,
               row: int, verdict: Verdict) -> float | None:
    if published is None:
        return None
    if isinstance(published, Mapping):
        for key in (verdict.claim, verdict.treatment):
            if key in published and published[key] is not None:
                return float(published[key])
        return None
    return None if row >= len(published) or published[row] is None else float(published[row])


def paired_difference_plot(
    verdicts: Sequence[Verdict], title: str = "",
    published: Mapping[str, float] | Sequence[float | None] | None = None,
) -> Figure:
    """One row per verdict: per-seed paired differences, effect with 95 % interval, 0, margins."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = len(verdicts)
    with style():
        fig, ax = plt.subplots(figsize=(7.2, 1.6 + 0.85 * n), layout="constrained")
        ax.axvline(0.0, color="0.35", lw=1, gid="zero")
        handles = {"no difference": Line2D([], [], color="0.35", lw=1)}
        labels = []
        for row, verdict in enumerate(verdicts):
            y = n - 1 - row
            values = [float(d["difference"]) for d in verdict.differences]
            jitter = [0.22 * (((i * 7) % 5) - 2) / 2 for i in range(len(values))]
            if values:
                ax.scatter(values, [y + j for j in jitter], s=16, alpha=0.6, color="tab:blue",
                           lw=0, zorder=3)
                handles["per-seed difference"] = Line2D([], [], marker="o", ls="none",
                                                        color="tab:blue", alpha=0.6)
            if math.isfinite(verdict.low):
                ax.errorbar([verdict.effect], [y], xerr=[[verdict.effect - verdict.low],
                                                         [verdict.high - verdict.effect]],
                            fmt="D", ms=5, color="black", capsize=4, elinewidth=2, zorder=4)
                handles["mean, 95 % t-interval"] = Line2D([], [], marker="D", color="black")
            else:
                ax.plot([verdict.effect], [y], "D", ms=5, mfc="white", color="black", zorder=4)
                handles["mean (no interval)"] = Line2D([], [], marker="D", ls="none",
                                                       mfc="white", color="black")
            inner = getattr(verdict, "tost_low", None), getattr(verdict, "tost_high", None)
            if None not in inner and all(math.isfinite(v) for v in inner):
                ax.plot(list(inner), [y, y], lw=6, alpha=0.3, color="black", solid_capstyle="butt",
                        zorder=3, gid="tost")
                handles["90 % interval (TOST decision)"] = Line2D([], [], lw=6, alpha=0.3,
                                                                  color="black")
            for bound in margin_bounds(verdict):
                ax.plot([bound, bound], [y - 0.42, y + 0.42], ls="--", lw=1.2, color="tab:orange",
                        gid="margin")
                handles["margin δ of the claim"] = Line2D([], [], ls="--", color="tab:orange")
            paper = _published(published, row, verdict)
            if paper is not None:
                ax.plot([paper], [y], marker="*", ms=9, ls="none", color="tab:red", zorder=5)
                handles["published difference"] = Line2D([], [], marker="*", ls="none",
                                                         color="tab:red")
            seeds = len({(d.get("stratum"), d.get("seed")) for d in verdict.differences})
            pair = wrap(f"{verdict.treatment} − {verdict.baseline}", 40)
            labels.append(f"{wrap(verdict.claim, 40)}\n{pair}\n→ {verdict.label}"
                          + (f" ({seeds} seed pairs)" if seeds else ""))
        ax.set_yticks(range(n))
        ax.set_yticklabels(list(reversed(labels)), fontsize=6.5)
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_xlabel("treatment − baseline (accuracy points)")
        fig.legend(list(handles.values()), list(handles), loc="outside right center",
                   fontsize=6.5, frameon=False)
        caption(fig, PAIRED_CAPTION + "; dashed: the claim's margin (−δ for '≥', ±δ for "
                "'equivalent'); grey: no difference")
        suptitle(fig, title)
    return fig


def paired_plot(verdicts: Sequence[Verdict], title: str = "") -> Figure:
    """The paired differences behind each verdict (:func:`paired_difference_plot`)."""
    return paired_difference_plot(verdicts, title)


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
    Class names are wrapped whole, never cut.
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
    names = [wrap(name, 12) for name in info.class_names[:cols]]
    name_lines = max(name.count("\n") + 1 for name in names)
    fig, axes = plt.subplots(
        2 if diffs else 1, 1, squeeze=False, height_ratios=[len(sets), len(diffs)] if diffs else None,
        figsize=(0.9 * cols + 1.6, 0.95 * (len(sets) + len(diffs)) + 0.6 + 0.12 * name_lines),
        layout="constrained")
    top = _mosaic([[None if im is None else im.permute(1, 2, 0) for im in row] for row in shown],
                  height, width, fill=1.0)
    axes[0][0].imshow(top.squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
    _label_mosaic(axes[0][0], [s["label"] for s in sets], height, width)
    axes[0][0].set_xticks([(width + _GAP) * c + width / 2 for c in range(cols)])
    axes[0][0].set_xticklabels(names, fontsize=7 if cols <= 20 else 5)
    axes[0][0].xaxis.tick_top()
    if diffs:
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")
        bottom = _mosaic([[None if d is None else d.unsqueeze(-1) for d in row] for _, row in diffs],
                         height, width, fill=float("nan"))
        image = axes[1][0].imshow(bottom.squeeze(-1).numpy(), cmap=cmap, vmin=-largest,
                                  vmax=largest)
        _label_mosaic(axes[1][0], [f"baseline − {s['label']}" for s, _ in diffs], height, width)
        axes[1][0].set_xticks([])
        fig.colorbar(image, ax=axes[1][0], shrink=0.8, label="pixel difference")
    suptitle(fig, title or "Synthetic images (one seed), and what the guidance changed")
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
    ax.set_yticklabels([wrap(label, 18) for label in labels], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def diversity_plot(gains: pd.DataFrame, title: str = "",
                   measures: Sequence[str] = ("disagreement", "cka_distance")) -> Figure:
    """The paired gain of each pool (95 % interval) against its diversity, one panel per measure,
    with Pearson's r (Fisher-z 95 % interval, n ≥ 4) and Spearman's ρ over ≥ 3 pools."""
    import matplotlib.pyplot as plt

    from ..pools.diversity import gain_correlation

    with style():
        fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.6),
                                 squeeze=False, layout="constrained")
    for ax, measure in zip(axes[0], measures, strict=True):
        x, y = gains[measure].to_numpy(float), gains["gain"].to_numpy(float)
        below = y - gains["low"].to_numpy(float)
        above = gains["high"].to_numpy(float) - y
        ax.errorbar(x, y, yerr=[below, above], fmt="o", capsize=3)
        ax.axhline(0.0, color="grey", lw=0.8, ls="--", gid="reference")
        ax.set_xlabel({"disagreement": "prediction disagreement (pairs of members)",
                       "cka_distance": "1 − linear CKA of features (pairs)"}.get(measure, measure))
        ax.set_ylabel("paired gain over the baseline (points)")
        if len(gains) >= 3 and len(set(x)) > 1:
            corr = gain_correlation(y, x)
            interval = (f" [{corr['low']:+.2f}, {corr['high']:+.2f}]" if corr["low"] is not None
                        else " (no interval: n < 4)")
            ax.set_title(f"r = {corr['r']:+.2f}{interval}, ρ = {corr['rho']:+.2f}, "
                         f"n = {corr['n']} pools", fontsize=8)
        else:
            ax.set_title(f"{len(gains)} pools: too few for a correlation (needs 3)", fontsize=8)
    caption(fig, "each dot: one pool's mean paired gain over the baseline with its 95 % "
                 "t-interval over seeds; dashed: no gain")
    suptitle(fig, title or "Gain against pool diversity")
    return fig
