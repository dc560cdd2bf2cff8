"""The study's figures, read from their artists: no line where no run exists, y axes near the
data, α on a log-type axis, readable labels, and no text outside the figure."""

from __future__ import annotations

import itertools
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ptmdd_helpers import report  # noqa: E402
from ptmdd_helpers.report.verdicts import Verdict  # noqa: E402

SEED = "subject.seed"
NO_LINE = ("None", "none", "", " ")


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _accuracy(base: float, seed: int, shift: float = 0.0) -> float:
    """A deterministic accuracy (fraction) near ``base``: ± 0.3 points over seeds."""
    return base + shift + 0.003 * (((seed * 5) % 7) - 3) / 3


def _conditions() -> pd.DataFrame:
    """Two methods, two conditions, IPC 1 and 10 (as floats), 4 seeds, 2 networks per seed."""
    rows = [{"method": m, "condition": c, "ipc": float(ipc), SEED: s, "net": n,
             "accuracy": _accuracy(0.80 if ipc == 1 else 0.88, s, 0.004 * (c == "+CLoM"))}
            for m, c, ipc, s, n in itertools.product(["DC", "DM"], ["baseline", "+CLoM"], [1, 10],
                                                     range(4), range(2))]
    return pd.DataFrame(rows)


def _drawn_lines(ax) -> list[Line2D]:
    """Lines of ``ax`` drawn as lines (a visible line style) through at least 2 points."""
    return [line for line in ax.get_lines()
            if line.get_linestyle() not in NO_LINE and len(line.get_xdata()) >= 2]


def _connecting(ax, allowed: tuple[str, ...] = ("reference",)) -> list[Line2D]:
    """Drawn lines that join data points: all but horizontal reference lines."""
    out = []
    for line in _drawn_lines(ax):
        horizontal = len(set(map(float, line.get_ydata()))) == 1
        if not (line.get_gid() in allowed and horizontal):
            out.append(line)
    return out


def _marker_x(ax) -> list[float]:
    """x of every mean marker (errorbar data lines: markers, no line style)."""
    return [float(v) for line in ax.get_lines() if line.get_linestyle() in NO_LINE
            and line.get_marker() not in (None, "None", "", "_", "|") for v in line.get_xdata()]


def _text_outside(fig) -> list[str]:
    """Texts drawn beyond the figure's bbox, computed here (independently of the package)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    drawn_ticks = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            drawn_ticks |= {id(t.label1) for t in axis.get_major_ticks()
                            if low - 1e-9 <= t.get_loc() <= high + 1e-9}
    every_tick = {id(t.label1) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for t in axis.get_major_ticks() + axis.get_minor_ticks()} | \
                 {id(t.label2) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for t in axis.get_major_ticks() + axis.get_minor_ticks()}
    out = []
    for text in fig.findobj(matplotlib.text.Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if id(text) in every_tick and id(text) not in drawn_ticks:
            continue
        e = text.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
            out.append(text.get_text())
    return out


def _all_text(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


@pytest.mark.parametrize("kind", ["point", "bar"])
def test_accuracy_plot_dots_or_bars_near_the_data(kind):
    frame = _conditions()
    references = pd.DataFrame({"label": ["DC (published)"], "accuracy": [0.83]})
    fig = report.accuracy_plot(frame, x="method", hue="condition", col="ipc", kind=kind,
                               references=references, title="00 · a title")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["IPC 1", "IPC 10"]  # not "ipc = 1.0"
    # per-seed means within 0.3 points of 80 (IPC 1) or 88 (IPC 10), + 0.4 with CLoM; the axis
    # spans the data and the reference line at 83, padded, far from 0
    (low1, high1), (low10, high10) = axes[0].get_ylim(), axes[1].get_ylim()
    assert 78.0 < low1 < 79.7 and 83.0 < high1 < 84.0
    assert 81.5 < low10 < 83.0 and 88.7 < high10 < 89.5
    for ax in axes:
        assert not _connecting(ax)  # no line between categories
        refs = [line for line in ax.get_lines() if line.get_gid() == "reference"]
        assert [float(line.get_ydata()[0]) for line in refs] == [pytest.approx(83.0)]
        assert ax.get_xlabel() == "method"
    if kind == "point":
        # one marker per method × condition per facet, dodged around the category position
        xs = sorted(_marker_x(axes[0]))
        assert len(xs) == 4 and xs[0] < 0 < xs[1] < 0.5 < xs[2] < 1 < xs[3]
    caption = _all_text(fig)
    assert "mean ± SD over 4 distillation seeds" in caption and "paired" in caption
    # the legend lies outside every axes: it never covers data
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert all(not legend.overlaps(ax.get_window_extent()) for ax in axes)
    assert not _text_outside(fig)


def test_accuracy_plot_labels_are_readable():
    frame = pd.DataFrame([{"n_models": float(n), "ptm_source": "CIFAR10", "some_column": 1,
                           SEED: s, "accuracy": _accuracy(0.7, s, 0.01 * n)}
                          for n in (0, 1, 4) for s in range(3)])
    fig = report.accuracy_plot(frame, x="n_models", col="ptm_source")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "PTMs (initializations)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "4"]
    assert ax.get_title() == "PTM source: CIFAR10"
    assert report.column_label("some_column") == "some column"
    assert report.column_label("alpha") == "α"
    with pytest.raises(ValueError, match="kind"):
        report.accuracy_plot(frame, x="n_models", kind="violin")


def _epochs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    guided = pd.DataFrame([{"method": m, "ptm_epoch": e, "condition": "+CLoM", SEED: s,
                            "accuracy": _accuracy(0.80, s, 0.002 * e)}
                           for m, e, s in itertools.product(["DC", "DM"], [1, 2, 6], range(3))])
    baseline = pd.DataFrame([{"method": "DC", "condition": "baseline", SEED: s,
                              "accuracy": _accuracy(0.795, s)} for s in range(3)])
    curves = pd.DataFrame([{"member": m, "epoch": e, "test_acc": 0.6 + 0.05 * e + 0.01 * m}
                           for m in range(3) for e in range(7)])
    return guided, curves, baseline


def test_epoch_plot_draws_no_line_between_untested_epochs():
    guided, curves, baseline = _epochs()
    fig = report.epoch_plot(guided, curves, x="ptm_epoch", hue="method", baseline=baseline,
                            title="03", references={"DC (published)": 0.81})
    dd, twin = fig.axes[0], fig.axes[1]
    assert not _connecting(dd)  # epochs 3–5 were not run: nothing joins 2 and 6
    xs = _marker_x(dd)
    assert len(xs) == 6 and {round(x) for x in xs} == {1, 2, 6}
    assert all(abs(x - round(x)) < 0.3 for x in xs)
    assert [float(t) for t in dd.get_xticks()] == [1.0, 2.0, 6.0]
    assert dd.get_ylim()[0] > 0
    # the PTMs' own curve may be a line: every epoch trained exists, and it lies on them only
    curve = [line for line in twin.get_lines() if line.get_gid() == "ptm-curve"]
    assert len(curve) == 1 and list(curve[0].get_xdata()) == list(range(7))
    assert not [line for line in _drawn_lines(twin) if line.get_gid() != "ptm-curve"]
    labels = {line.get_label() for line in dd.get_lines() if line.get_gid() == "reference"}
    assert labels == {"no PTM loss (baseline)", "DC (published)"}
    assert not _text_outside(fig)


def _alphas() -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "alpha": a, SEED: s,
                          "accuracy": _accuracy(0.80, s, -0.03 if a == math.inf else 0.0)}
                         for m, a, s in itertools.product(["DC", "DM"],
                                                          [0.0, 10.0, 100.0, 1000.0, math.inf],
                                                          range(3))])


def test_alpha_plot_log_axis_and_ptm_only_apart():
    fig = report.alpha_plot(_alphas(), hue="method", title="05")
    main, side = fig.axes
    assert main.get_xscale() in ("symlog", "log")
    for ax in (main, side):
        assert not _connecting(ax)
    xs = _marker_x(main)
    assert len(xs) == 8 and all(math.isfinite(x) and x < 5000 for x in xs)  # no α = ∞ here
    assert len(_marker_x(side)) == 2  # PTM loss only: its own panel, one marker per method
    assert "PTM loss" in side.get_xticklabels()[0].get_text()
    assert main.get_ylim()[0] > 0
    assert not _text_outside(fig)


def test_scatter_plot_markers_only():
    frame = _alphas()
    fig = report.scatter_plot(frame[frame["alpha"] < math.inf], x="alpha", hue="method",
                              log_x=True)
    assert fig.axes[0].get_xscale() == "symlog"
    assert not _connecting(fig.axes[0])


def _verdict(relation: str, margin: float, differences: list[float], claim: str,
             tost: tuple[float, float] | None = None) -> Verdict:
    effect = sum(differences) / len(differences)
    return Verdict(
        claim=claim, treatment="DC + CLoM (PTM at epoch 2, pool of five ConvNets)",
        baseline="DC without any PTM loss", relation=relation, margin=margin, effect=effect,
        low=effect - 0.4, high=effect + 0.4, df=3.0, p_value=0.2, paired=True, unit="paired",
        n_treatment=len(differences), n_baseline=len(differences), sd_paired=0.2,
        sd_unpaired=0.3, label="inconclusive",
        differences=[{"stratum": "DC, 1", "seed": i, "difference": d}
                     for i, d in enumerate(differences)],
        **({"tost_low": tost[0], "tost_high": tost[1]} if tost else {}),
    )


def _margin_lines(ax) -> list[float]:
    return sorted(float(line.get_xdata()[0]) for line in ax.get_lines()
                  if line.get_gid() == "margin")


def test_paired_difference_plot_rows_margins_and_text_inside():
    long = ("(2) sub-optimal (early-epoch) PTMs help the distillation of every method at every "
            "IPC the profile lists, and more than the final-epoch PTMs do")
    verdicts = [_verdict(">", 0.0, [0.3, 0.5, -0.1, 0.4], long),
                _verdict(">=", 1.0, [0.1, -0.3, 0.2, 0.0], "early PTMs are not worse"),
                _verdict("equivalent", 0.5, [0.1, -0.2, 0.05, 0.0], "equivalent within ±0.5",
                         tost=(-0.15, 0.12))]
    fig = report.paired_difference_plot(
        verdicts, title="03 · Epoch: paired differences by seed, with a long title " * 2,
        published={long: 0.6})
    ax = fig.axes[0]
    assert _margin_lines(ax) == [-1.0, -0.5, 0.5]  # −δ for '≥', ±δ for 'equivalent'
    zero = [line for line in ax.get_lines() if line.get_gid() == "zero"]
    assert len(zero) == 1 and set(map(float, zero[0].get_xdata())) == {0.0}
    dots = [c for c in ax.collections if len(c.get_offsets()) == 4]
    assert len(dots) == 3  # per-seed differences, one scatter per verdict
    assert sorted(float(x) for x in dots[0].get_offsets()[:, 0]) == [-0.1, 0.3, 0.4, 0.5]
    assert "per-seed paired differences (treatment − baseline)" in _all_text(fig)
    assert "95 % t-interval" in _all_text(fig)
    assert not _text_outside(fig)
    assert not report.texts_outside(fig)
    # the check can fail: a text placed beyond the right edge is found by both
    fig.text(1.02, 0.5, "beyond the edge")
    assert _text_outside(fig) == ["beyond the edge"]
    assert report.texts_outside(fig) == ["beyond the edge"]


def test_paired_plot_keeps_its_signature():
    fig = report.paired_plot([_verdict("equivalent", 0.5, [0.1, -0.2, 0.0], "x")], "title")
    assert _margin_lines(fig.axes[0]) == [-0.5, 0.5]


def test_synthetic_images_keep_whole_class_names():
    import torch

    sets = [{"dataset": "FashionMNIST", "images": torch.zeros(10, 1, 28, 28),
             "labels": torch.arange(10), "method": "DC", "baseline": base, "label": label}
            for base, label in ((True, "DC"), (False, "DC + CLoM"))]
    fig = report.synthetic_images_plot(sets, title="images")
    names = [t.get_text().replace("\n", "") for t in fig.axes[0].get_xticklabels()]
    assert names[0] == "T-shirt/top" and names[-1] == "Ankle boot"
    assert not _text_outside(fig)


def test_method_references_give_each_method_its_published_random_real_and_whole_lines():
    """00's accuracy-by-iterations panels: per method its published number, the mean over seeds
    of its random real subsets (each seed's networks averaged first) and the whole training set."""
    rows = [{"method": m, "condition": "baseline", SEED: s, "net": 0, "accuracy": 0.68}
            for m in ("DC", "DM") for s in range(3)]
    rows += [{"method": "DC", "condition": "random real", SEED: s, "net": n,
              "accuracy": 0.40 + 0.04 * s + 0.02 * n} for s in range(3) for n in range(2)]
    rows += [{"method": "whole", "condition": "whole dataset", SEED: None, "net": 0,
              "accuracy": 0.925}]
    refs = report.method_references(pd.DataFrame(rows), {"DC": 70.5, "DM": 70.7, "MTT": 1.0})
    lines = {(r.method, r.label): r.points for r in refs.itertuples()}
    assert lines == pytest.approx({
        ("DC", "published"): 70.5, ("DC", "random real subset (mean over seeds)"): 45.0,
        ("DC", "whole training set"): 92.5,
        ("DM", "published"): 70.7, ("DM", "whole training set"): 92.5})
    fig = report.accuracy_plot(pd.DataFrame(rows[:6]).assign(iterations=100), x="iterations",
                               hue="condition", col="method", references=refs)
    drawn = {(ax.get_title(), line.get_label(), round(line.get_ydata()[0], 3))
             for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "reference"}
    assert ("DM", "whole training set", 92.5) in drawn
    assert not any(title == "DM" and label.startswith("random") for title, label, _ in drawn)
