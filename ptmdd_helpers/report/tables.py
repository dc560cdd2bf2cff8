"""Figures, tables and verdicts of the study notebooks, and the index that collects them.

Every notebook writes into ``figures/<profile>/``: its figures (PNG and PDF, seaborn), its tables
(markdown and LaTeX) and a markdown fragment ``<notebook>.md`` that shows them with the notebook's
verdicts; :func:`write_index` joins the fragments into ``README.md``. Accuracies in a study frame
are fractions in [0, 1]; everything shown here is in percent ("accuracy points").

Every "±" is the sample SD (ddof 1) over distillation seeds of the per-seed mean accuracy, with n =
seeds (:mod:`~ptmdd_helpers.spread`); the spread over the networks of one set is its own column.
The verdicts (:mod:`~ptmdd_helpers.report.verdicts`) are paired by seed; the index
adds Holm's decision over all claims of the batch and lists the claims that share runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..paths import resolve
from ..spread import mean_sd, plus_minus
from .family import family_decisions, shared_runs
from .figures import paired_plot
from .plots import level_text
from .verdicts import (
    ACCURACY,
    RULE,
    SEED,
    Verdict,
    compare,
    seed_means,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LABELS = ("supported", "not supported", "inconclusive")


# --------------------------------------------------------------------------- tables


def _network_sd(rows: pd.DataFrame, value: str) -> float | None:
    """The spread over networks: root mean of the within-seed sample variances (points)."""
    variances = [v for v in (100.0 * rows[value].astype(float)).groupby(rows[SEED]).var(ddof=1)
                 if pd.notna(v)]
    return math.sqrt(sum(variances) / len(variances)) if variances else None


def accuracy_table(
    frame: pd.DataFrame, rows: Sequence[str], columns: Sequence[str] = (), value: str = ACCURACY,
    average: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean ± SD over seeds (of the per-seed mean over networks; n = seeds), by ``rows`` ×
    ``columns``; a long table (no ``columns``) adds the SD over networks within a seed.

    ``average`` columns (e.g. evaluation architectures) are averaged within a seed first.
    """
    keys = [*rows, *columns]
    cells = []
    for key, part in frame.groupby(keys, dropna=False, sort=False):
        means = seed_means(part, average=average, value=value)["points"] / 100.0
        mean, sd, n = mean_sd(means)
        record = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        record["cell"] = plus_minus(mean, sd, n)
        sd_nets = _network_sd(part, value)
        record["sd_nets"] = "—" if sd_nets is None else f"{sd_nets:.2f}"
        cells.append(record)
    stats = pd.DataFrame(cells)
    if not columns:
        return stats[[*rows, "cell", "sd_nets"]].rename(columns={
            "cell": "accuracy % (mean ± SD over seeds, n seeds)",
            "sd_nets": "SD over networks (within a seed)"})
    wide = stats.pivot(index=list(rows), columns=list(columns), values="cell")
    names = list(columns)
    labels = wide.columns if isinstance(wide.columns, pd.MultiIndex) else [(c,) for c in wide.columns]
    wide.columns = [
        " / ".join(f"{n} {'—' if pd.isna(v) else level_text(v)}" for n, v in zip(names, c, strict=True))
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


def gain_by_pool(
    frame: pd.DataFrame, diversity: pd.DataFrame, key: str, *, treatment: str = "+CLoM",
    baseline: str = "baseline", strata: Sequence[str] = ("method", "ipc"),
) -> pd.DataFrame:
    """Per pool of ``diversity`` (joined to ``frame`` on ``key``): its paired gain over the
    baseline in points with the 95 % interval (:func:`compare`), next to its diversity."""
    rows = []
    for _, pool in diversity.iterrows():
        verdict = compare(frame, {"condition": treatment, key: pool[key]},
                          {"condition": baseline}, strata=[s for s in strata if s in frame],
                          claim=f"gain of the pool {pool[key]}")
        rows.append({**pool.to_dict(), "gain": verdict.effect, "low": verdict.low,
                     "high": verdict.high, "seeds": verdict.n_treatment})
    return pd.DataFrame.from_records(rows)


# --------------------------------------------------------------------------- outputs


def default_figures_dir(profile: str) -> Path:
    """The figures folder of ``profile`` (``$PTMDD_FIGURES``, else ``figures/<profile>``)."""
    return resolve("figures", profile={"profile": profile})


class SavedFiles(list):
    """The paths a figure or table was saved to, shown in a notebook as one short line."""

    def __repr__(self) -> str:
        return "saved " + ", ".join(Path(p).name for p in self)


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

    def figure(self, fig: Figure, name: str | None = None) -> SavedFiles:
        """Save ``fig`` as ``<name>.png`` and ``<name>.pdf``; return the two paths."""
        name = name or self.notebook
        paths = [self.directory / f"{name}.{ext}" for ext in ("png", "pdf")]
        for path in paths:
            fig.savefig(path, dpi=150, bbox_inches="tight")
        if name not in self.figures:
            self.figures.append(name)
        return SavedFiles(paths)

    def table(self, table: pd.DataFrame, name: str | None = None, caption: str = "") -> SavedFiles:
        """Write ``table`` as ``<name>.md`` and ``<name>.tex``; return the two paths."""
        name = name or f"{self.notebook}_table"
        md, tex = self.directory / f"{name}.md", self.directory / f"{name}.tex"
        if name == self.notebook:
            raise ValueError(f"table name {name!r} is the fragment's name; choose another")
        md.write_text(to_markdown(table), encoding="utf-8")
        tex.write_text(to_latex(table, caption), encoding="utf-8")
        self.tables = [t for t in self.tables if t[0] != name] + [(name, caption)]
        return SavedFiles([md, tex])

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

    def write(self) -> SavedFiles:
        """Write ``<notebook>.md`` (the index fragment) and ``<notebook>.verdicts.json``, and the
        per-seed differences of its verdicts as ``<notebook>_paired.png``/``.pdf``."""
        paired = [v for v in self.verdicts if v.differences]
        if paired:
            import matplotlib.pyplot as plt

            fig = paired_plot(paired, title=f"{self.title}: paired differences by seed")
            self.figure(fig, f"{self.notebook}_paired")
            plt.close(fig)
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
        return SavedFiles([path, self.directory / f"{self.notebook}.verdicts.json"])


def record_batch(directory: str | Path, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Append ``batch`` to ``batches.json`` in ``directory``; return every batch recorded there."""
    path = Path(directory) / "batches.json"
    history = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    history.append(dict(batch))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    return history


def _interval(v: Mapping[str, Any]) -> str:
    low = v.get("low")
    if low is None or not math.isfinite(low):
        return "—"
    text = f"[{low:+.2f}, {v['high']:+.2f}]"
    if v.get("tost_low") is not None:  # an equivalence claim decides on its 90 % interval
        text += f"; 90 % [{v['tost_low']:+.2f}, {v['tost_high']:+.2f}] vs ±{v['margin']:g}"
    elif v.get("relation") == ">=":
        text += f" vs −{v['margin']:g}"
    return text


def write_index(
    directory: str | Path, profile: str, notebooks: Sequence[str], meta: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write ``README.md`` in ``directory``: meta data, the rule, every claim with its raw and
    Holm decisions (one family: all claims of the batch), the claims that share runs, then each
    notebook's fragment.

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
    claims = []
    for notebook in notebooks:
        verdict_file = directory / f"{notebook}.verdicts.json"
        if verdict_file.is_file():
            claims += [(notebook, v) for v in json.loads(verdict_file.read_text(encoding="utf-8"))]
    if claims:
        holm_labels = family_decisions([v for _, v in claims])
        lines += [
            f"**Claims** ({len(claims)}, one family, each tested as its profile declares). "
            "*raw*: the claim's own interval decides (95 %; an equivalence claim: its 90 % "
            "interval against ±δ, TOST); *Holm*: Holm's step-down decision at a family-wise "
            "5 % over all of them. "
            "*seeds needed* (inconclusive claims only) is a planning aid: the seeds per stratum "
            "at which the half-width would fall below |effect − no-effect point|, computed from "
            "the observed SD of the paired differences.", "",
            "| # | notebook | claim | effect (points) | paired CI | half-width | seeds | "
            "SD paired / unpaired | raw | Holm | seeds needed |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for number, ((notebook, v), holm_label) in enumerate(
                zip(claims, holm_labels, strict=True), start=1):
            half = v.get("half_width")
            half = f"{half:.2f}" if half is not None and math.isfinite(half) else "—"
            pairing = ("paired" if v.get("paired") else "unpaired")
            sds = (f"{v['sd_paired']:.2f} / {v['sd_unpaired']:.2f}"
                   if v.get("sd_paired") is not None else
                   f"— / {v['sd_unpaired']:.2f}" if v.get("sd_unpaired") is not None else "—")
            needed = v.get("seeds_needed") if str(v["label"]).startswith("inconclusive") else None
            lines.append(
                f"| {number} | {notebook} | {v['claim']} | {v['effect']:+.2f} | {_interval(v)} "
                f"({pairing}) | {half} | {v['n_treatment']} vs {v['n_baseline']} | {sds} | "
                f"**{v['label']}** | {holm_label} | {needed if needed is not None else ''} |"
            )
        shared = shared_runs([v for _, v in claims])
        if shared:
            lines += ["", "Claims that share runs (their verdicts are not independent evidence):",
                      ""]
            lines += [f"- #{i + 1} and #{j + 1}: {sets} trained-on sets (distillations or real "
                      f"subsets) and {evaluations} evaluation runs in common"
                      for i, j, sets, evaluations in shared]
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
