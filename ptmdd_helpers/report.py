"""Figures, tables and verdicts of the study notebooks, and the index that collects them.

Every notebook writes into ``figures/<profile>/``: its figures (PNG and PDF, seaborn), its tables
(markdown and LaTeX) and a markdown fragment ``<notebook>.md`` that shows them with the notebook's
verdicts; :func:`write_index` joins the fragments into ``README.md``. Accuracies in a study frame
are fractions in [0, 1]; everything shown here is in percent ("accuracy points").

The verdict rule (:data:`RULE`) is defined once and printed beside every verdict: the effect is the
difference of mean accuracies, treatment − baseline, in points, with a 95 % Welch t-interval. The
unit of replication is the distillation seed (accuracies of the networks trained on one synthetic
set are averaged first) whenever every compared group has at least two seeds; otherwise the units
are the evaluation networks, and the interval then shows evaluation noise only. Comparisons over
several strata (e.g. evaluation architectures) average the per-stratum differences with equal
weights and combine their variances (Welch–Satterthwaite degrees of freedom).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LABELS = ("supported", "not supported", "inconclusive")
ACCURACY = "accuracy"
SEED = "subject.seed"

RULE = (
    "effect = mean accuracy of the treatment − mean of the baseline, in points, with a 95 % "
    "Welch t-interval over distillation seeds (per-seed means of the evaluation networks; over "
    "evaluation networks when a group has fewer than 2 seeds). Claim 'treatment > baseline': "
    "supported if the interval's lower bound > 0, not supported if its upper bound < 0, else "
    "inconclusive. Claim 'treatment ≥ baseline' (not worse by more than a margin δ): supported "
    "if lower bound > −δ, not supported if upper bound < −δ, else inconclusive."
)


# --------------------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    """The outcome of one claim: effect, 95 % interval, label and how they were computed."""

    claim: str
    treatment: str
    baseline: str
    relation: str
    margin: float
    effect: float
    low: float
    high: float
    df: float
    unit: str
    n_treatment: int
    n_baseline: int
    label: str
    rule: str = RULE

    def text(self) -> str:
        """One paragraph: claim, effect with its interval, units, verdict."""
        interval = (f"[{self.low:+.2f}, {self.high:+.2f}]" if math.isfinite(self.low)
                    else "[undefined: fewer than 2 units in a group]")
        relation = (f"≥ (margin {self.margin:g} points)" if self.relation == ">=" else
                    self.relation)
        return (
            f"Claim: {self.claim}\n"
            f"Test: {self.treatment} {relation} {self.baseline}: effect {self.effect:+.2f} "
            f"points, 95 % CI {interval}, units: {self.unit} "
            f"(n = {self.n_treatment} vs {self.n_baseline})\n"
            f"Verdict: {self.label}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The verdict as plain data (JSON-friendly)."""
        return asdict(self)


def select(frame: pd.DataFrame, where: Mapping[str, Any] | pd.Series) -> pd.DataFrame:
    """Rows of ``frame`` whose columns equal the given values (a list/tuple: any of them)."""
    if isinstance(where, pd.Series):
        return frame[where.to_numpy()]
    keep = pd.Series(True, index=frame.index)
    for column, value in where.items():
        if column not in frame.columns:
            raise ValueError(f"no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        if isinstance(value, (list, tuple, set)):
            keep &= frame[column].isin(list(value))
        elif value is None:
            keep &= frame[column].isna()
        else:
            keep &= frame[column] == value
    return frame[keep]


def _describe(where: Mapping[str, Any] | pd.Series, name: str | None) -> str:
    if name:
        return name
    if isinstance(where, pd.Series):
        return "selection"
    return ", ".join(f"{k}={v}" for k, v in where.items())


def _units(rows: pd.DataFrame, strata: Sequence[str], by_seed: bool, value: str) -> pd.DataFrame:
    """Per-stratum unit values (in points): per-seed means, or the network accuracies."""
    points = rows.assign(_points=100.0 * rows[value].astype(float))
    if by_seed:
        keys = [*strata, SEED]
        return points.groupby(keys, dropna=False)["_points"].mean().reset_index()
    return points[[*strata, "_points"]] if strata else points[["_points"]]


def welch_interval(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]], level: float = 0.95
) -> tuple[float, float, float, float]:
    """(effect, low, high, df) for the equal-weight mean over strata of mean(t) − mean(b)."""
    from scipy import stats

    strata = len(groups)
    effect, variance, denominator = 0.0, 0.0, 0.0
    finite = True
    for treated, base in groups:
        for values, sign in ((treated, 1.0), (base, -1.0)):
            n = len(values)
            mean = sum(values) / n
            effect += sign * mean / strata
            if n < 2:
                finite = False
                continue
            var = sum((v - mean) ** 2 for v in values) / (n - 1)
            component = var / n / strata**2
            variance += component
            denominator += component**2 / (n - 1)
    if not finite:
        return effect, math.nan, math.nan, math.nan
    if variance == 0.0:
        return effect, effect, effect, math.inf
    df = variance**2 / denominator
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(variance)
    return effect, effect - half, effect + half, df


def decide(low: float, high: float, relation: str = ">", margin: float = 0.0) -> str:
    """The verdict label for an interval [low, high] and a claim ``>``, ``<`` or ``>=``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if relation == ">":
        return "supported" if low > 0 else "not supported" if high < 0 else "inconclusive"
    if relation == "<":
        return "supported" if high < 0 else "not supported" if low > 0 else "inconclusive"
    if relation == ">=":
        return ("supported" if low > -margin else
                "not supported" if high < -margin else "inconclusive")
    raise ValueError(f"unknown relation {relation!r}; valid: >, <, >=")


def compare(
    frame: pd.DataFrame,
    treatment: Mapping[str, Any] | pd.Series,
    baseline: Mapping[str, Any] | pd.Series,
    *,
    claim: str,
    relation: str = ">",
    margin: float = 1.0,
    strata: Sequence[str] = (),
    value: str = ACCURACY,
    treatment_name: str | None = None,
    baseline_name: str | None = None,
) -> Verdict:
    """Test ``claim`` (treatment ``relation`` baseline) on a study frame; see :data:`RULE`."""
    treated, base = select(frame, treatment), select(frame, baseline)
    if treated.empty or base.empty:
        raise ValueError(
            f"nothing to compare for {claim!r}: {len(treated)} treatment rows "
            f"({_describe(treatment, treatment_name)}), {len(base)} baseline rows "
            f"({_describe(baseline, baseline_name)})"
        )
    strata = list(strata)
    keys = (sorted(set(map(tuple, treated[strata].astype(str).to_numpy())) &
                   set(map(tuple, base[strata].astype(str).to_numpy())))
            if strata else [()])
    if not keys:
        raise ValueError(f"treatment and baseline share no stratum of {strata} for {claim!r}")

    def in_stratum(rows: pd.DataFrame, key: tuple) -> pd.DataFrame:
        if not strata:
            return rows
        mask = (rows[strata].astype(str) == pd.Series(key, index=strata)).all(axis=1)
        return rows[mask.to_numpy()]

    by_seed = all(
        in_stratum(rows, key)[SEED].nunique() >= 2 for key in keys for rows in (treated, base)
    ) if SEED in frame.columns else False
    groups, n_t, n_b = [], 0, 0
    for key in keys:
        t = _units(in_stratum(treated, key), [], by_seed, value)["_points"].tolist()
        b = _units(in_stratum(base, key), [], by_seed, value)["_points"].tolist()
        groups.append((t, b))
        n_t, n_b = n_t + len(t), n_b + len(b)
    effect, low, high, df = welch_interval(groups)
    unit = "distillation seeds" if by_seed else "evaluation networks (one distillation seed)"
    if strata:
        unit += (f"; {len(keys)} {'stratum' if len(keys) == 1 else 'strata, equally weighted,'} "
                 f"by {', '.join(strata)}")
    return Verdict(
        claim=claim, treatment=_describe(treatment, treatment_name),
        baseline=_describe(baseline, baseline_name), relation=relation,
        margin=margin if relation == ">=" else 0.0, effect=effect, low=low, high=high, df=df,
        unit=unit, n_treatment=n_t, n_baseline=n_b, label=decide(low, high, relation, margin),
    )


# --------------------------------------------------------------------------- tables


def accuracy_table(
    frame: pd.DataFrame, rows: Sequence[str], columns: Sequence[str] = (), value: str = ACCURACY
) -> pd.DataFrame:
    """Mean ± std accuracy (points) with the number of networks, by ``rows`` × ``columns``."""
    keys = [*rows, *columns]
    grouped = frame.groupby(keys, dropna=False, sort=False)[value]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [
        f"{100 * m:.2f} ± {100 * (0.0 if pd.isna(s) else s):.2f} (n={int(c)})"
        for m, s, c in zip(stats["mean"], stats["std"], stats["count"], strict=True)
    ]
    if not columns:
        return stats[[*rows, "cell"]].rename(columns={"cell": "accuracy % (mean ± std)"})
    wide = stats.pivot(index=list(rows), columns=list(columns), values="cell")
    names = list(columns)
    labels = wide.columns if isinstance(wide.columns, pd.MultiIndex) else [(c,) for c in wide.columns]
    wide.columns = [
        " / ".join(f"{n} {'—' if pd.isna(v) else v}" for n, v in zip(names, c, strict=True))
        for c in labels
    ]
    return wide.reset_index()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no index)."""
    header = [_cell(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, caption: str = "") -> str:
    """A booktabs LaTeX table (no index), with ``caption`` when given."""
    body = table.to_latex(index=False, escape=True, float_format=lambda v: f"{v:.4g}")
    if not caption:
        return body
    for char in "&%$#_{}":
        caption = caption.replace(char, "\\" + char)
    return ("\\begin{table}[t]\n\\centering\n" + body +
            f"\\caption{{{caption}}}\n\\end{{table}}\n")


# --------------------------------------------------------------------------- figures


def _sns():
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid")
    return sns


def with_points(frame: pd.DataFrame, value: str = ACCURACY) -> pd.DataFrame:
    """A copy of ``frame`` with an ``accuracy (%)`` column."""
    return frame.assign(**{"accuracy (%)": 100.0 * frame[value].astype(float)})


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
    """Accuracy (mean ± std over networks) against ``x``; ``references`` draws dashed lines.

    ``references`` has columns ``label`` and ``accuracy`` (fraction) and, when faceting, ``col``.
    """
    sns = _sns()
    data = with_points(frame, value)
    options = dict(errorbar="sd", order=order, hue_order=hue_order)
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
    ``baseline`` (rows of the unguided method) is drawn as a dashed line with its ±std band.
    """
    import matplotlib.pyplot as plt

    sns = _sns()
    data = with_points(frame, value)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    sns.lineplot(data=data, x=x, y="accuracy (%)", hue=hue, errorbar="sd", marker="o", ax=ax)
    if baseline is not None and not baseline.empty:
        points = 100.0 * baseline[value].astype(float)
        mean, std = float(points.mean()), float(points.std(ddof=1)) if len(points) > 1 else 0.0
        ax.axhline(mean, ls="--", color="grey", lw=1, label="no PTM (baseline)")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, lw=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("PTM training epoch")
    ax.set_ylabel("DD test accuracy (%)")
    twin = ax.twinx()
    ptm = curves.assign(**{"PTM test accuracy (%)": 100.0 * curves["test_acc"].astype(float)})
    sns.lineplot(data=ptm, x="epoch", y="PTM test accuracy (%)", errorbar="sd", color="tab:red",
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
    """Mean ± std accuracy against a numeric ``x`` (e.g. α), optionally on a symlog axis."""
    import matplotlib.pyplot as plt

    sns = _sns()
    data = with_points(frame, value)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    sns.lineplot(data=data, x=x, y="accuracy (%)", hue=hue, errorbar="sd", marker="o",
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


def pool_cost_table(pools: pd.DataFrame) -> pd.DataFrame:
    """Per pool source and architecture: members, epochs, training time and storage."""
    grouped = pools.groupby(["source", "arch"], sort=False)
    table = grouped.agg(members=("seed", "count"), epochs=("epochs", "max"),
                        train_seconds=("train_seconds", "sum"),
                        seconds_per_epoch=("train_seconds", "sum"),
                        checkpoints=("checkpoints", "sum"), storage_MB=("storage_MB", "sum"))
    table["seconds_per_epoch"] = table["seconds_per_epoch"] / (table["members"] * table["epochs"])
    table = table.reset_index()
    total = {"source": "total", "arch": "", "members": table["members"].sum(), "epochs": "",
             "train_seconds": table["train_seconds"].sum(), "seconds_per_epoch": "",
             "checkpoints": table["checkpoints"].sum(), "storage_MB": table["storage_MB"].sum()}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    for column in ("train_seconds", "storage_MB"):
        table[column] = table[column].map(lambda v: f"{float(v):.1f}")
    table["seconds_per_epoch"] = table["seconds_per_epoch"].map(
        lambda v: f"{float(v):.2f}" if v != "" else "")
    return table


def distill_cost_table(distills: pd.DataFrame, by: str = "condition") -> pd.DataFrame:
    """Mean distillation time per method and ``by`` (guided or not), and its ratio to unguided."""
    guided = (distills["guidance.kind"].notna() if "guidance.kind" in distills
              else pd.Series(False, index=distills.index))
    distills = distills.assign(guided=guided)
    rows = []
    for (method, label), part in distills.groupby(["method", by], sort=False):
        base = distills[(distills["method"] == method) & ~distills["guided"]]["distill_seconds"]
        seconds = part["distill_seconds"].astype(float)
        per_iteration = seconds / part["iterations"].astype(float)
        rows.append({
            "method": method, by: label, "runs": len(part),
            "iterations": int(part["iterations"].iloc[0]),
            "seconds (mean)": f"{seconds.mean():.2f}",
            "ms / iteration": f"{1000 * per_iteration.mean():.1f}",
            "× unguided": f"{seconds.mean() / base.mean():.2f}" if len(base) else "",
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- outputs


def default_figures_dir(profile: str) -> Path:
    """``figures/<profile>/`` under the project root."""
    from .study import project_root

    return project_root() / "figures" / profile


@dataclass
class Report:
    """What one notebook writes: figures, tables and verdicts, and its index fragment."""

    notebook: str
    profile: str
    title: str
    question: str = ""
    directory: Path | None = None
    figures: list[str] = field(default_factory=list)
    tables: list[tuple[str, str]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory or default_figures_dir(self.profile))
        self.directory.mkdir(parents=True, exist_ok=True)

    def figure(self, fig: Figure, name: str | None = None) -> list[Path]:
        """Save ``fig`` as ``<name>.png`` and ``<name>.pdf``; return the two paths."""
        name = name or self.notebook
        paths = [self.directory / f"{name}.{ext}" for ext in ("png", "pdf")]
        for path in paths:
            fig.savefig(path, dpi=150, bbox_inches="tight")
        if name not in self.figures:
            self.figures.append(name)
        return paths

    def table(self, table: pd.DataFrame, name: str | None = None, caption: str = "") -> list[Path]:
        """Write ``table`` as ``<name>.md`` and ``<name>.tex``; return the two paths."""
        name = name or f"{self.notebook}_table"
        md, tex = self.directory / f"{name}.md", self.directory / f"{name}.tex"
        if name == self.notebook:
            raise ValueError(f"table name {name!r} is the fragment's name; choose another")
        md.write_text(to_markdown(table), encoding="utf-8")
        tex.write_text(to_latex(table, caption), encoding="utf-8")
        self.tables = [t for t in self.tables if t[0] != name] + [(name, caption)]
        return [md, tex]

    def verdict(self, verdict: Verdict) -> Verdict:
        """Record ``verdict`` and print it with the rule."""
        self.verdicts.append(verdict)
        print(verdict.text())
        print(f"Rule: {verdict.rule}")
        return verdict

    def note(self, text: str) -> None:
        """Add a line to the fragment (e.g. which runs diverged)."""
        self.notes.append(text)

    def note_missing(self, frame: pd.DataFrame) -> int:
        """Note (and print) the grid's evaluations without a result, e.g. diverged distillations."""
        missing = frame.attrs.get("missing", [])
        for item in missing:
            labels = ", ".join(f"{k}={v}" for k, v in item.items() if k != "run")
            text = f"no result for {labels} (its distillation diverged or failed)"
            print(text)
            self.note(text)
        return len(missing)

    def write(self) -> Path:
        """Write ``<notebook>.md`` (the index fragment) and ``<notebook>.verdicts.json``."""
        lines = [f"## {self.title}", ""]
        if self.question:
            lines += [self.question, ""]
        for name in self.figures:
            lines += [f"![{name}]({name}.png)", "", f"[PDF]({name}.pdf)", ""]
        for name, caption in self.tables:
            if caption:
                lines += [f"*{caption}*", ""]
            lines += [(self.directory / f"{name}.md").read_text(encoding="utf-8"),
                      f"([LaTeX]({name}.tex))", ""]
        for verdict in self.verdicts:
            lines += ["```", verdict.text(), "```", ""]
        for note in self.notes:
            lines += [f"- {note}"]
        if self.notes:
            lines.append("")
        path = self.directory / f"{self.notebook}.md"
        path.write_text("\n".join(lines), encoding="utf-8")
        (self.directory / f"{self.notebook}.verdicts.json").write_text(
            json.dumps([v.as_dict() for v in self.verdicts], indent=2, default=str) + "\n",
            encoding="utf-8",
        )
        return path


def record_batch(directory: str | Path, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Append ``batch`` to ``batches.json`` in ``directory``; return every batch recorded there."""
    path = Path(directory) / "batches.json"
    history = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    history.append(dict(batch))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    return history


def write_index(
    directory: str | Path, profile: str, notebooks: Sequence[str], meta: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write ``README.md`` in ``directory``: meta data, the rule, verdicts, each notebook's fragment.

    ``history`` (from :func:`record_batch`) is listed, so the time of the batch that computed the
    runs stays visible after later batches that only read them.
    """
    directory = Path(directory)
    lines = [f"# Study results: profile `{profile}`", ""]
    lines += [f"- **{key}**: {value}" for key, value in meta.items()]
    if history:
        columns = list(history[0])
        lines += ["", "Batches that wrote this folder:", "",
                  "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(b.get(c, "")) for c in columns) + " |" for b in history]
    lines += ["", f"**Verdict rule.** {RULE}", ""]
    summary = []
    for notebook in notebooks:
        verdict_file = directory / f"{notebook}.verdicts.json"
        if verdict_file.is_file():
            for v in json.loads(verdict_file.read_text(encoding="utf-8")):
                summary.append((notebook, v["claim"], v["effect"], v["low"], v["high"], v["label"]))
    if summary:
        lines += ["| notebook | claim | effect (points) | 95 % CI | verdict |", "|---|---|---|---|---|"]
        for notebook, claim, effect, low, high, label in summary:
            ci = f"[{low:+.2f}, {high:+.2f}]" if low is not None and math.isfinite(low) else "—"
            lines.append(f"| {notebook} | {claim} | {effect:+.2f} | {ci} | **{label}** |")
        lines.append("")
    for notebook in notebooks:
        fragment = directory / f"{notebook}.md"
        if fragment.is_file():
            lines += [fragment.read_text(encoding="utf-8"), ""]
        else:
            lines += [f"## {notebook}", "", "(no results yet: not run with this profile)", ""]
    path = directory / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
