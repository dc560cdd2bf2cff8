"""Write the seven study notebooks (without outputs) into ``notebooks/``.

Run ``python scripts/make_notebooks.py`` after changing a notebook's text here; the notebooks are
thin: a title and question, a ``parameters`` cell, the grid, ``study.run``, a figure, a table and
verdicts computed from the frame. Everything else lives in ``ptmdd_helpers.study`` and ``report``.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

PARAMETERS = '''\
profile = "smoke"  # a profile in parameters/: smoke (offline, minutes), cpu (hours), paper (GPU)
overrides = {}     # values replacing the profile's, e.g. {"seeds": [0, 1, 2], "eval.n_nets": 5}
params = None      # the merged parameters; None: parameters/<profile>.yaml ⊕ overrides'''

SETUP = '''\
from ptmdd_helpers import report, study

NOTEBOOK = "{name}"
params = params or study.notebook_parameters(NOTEBOOK, profile, overrides)
grid = study.build_grid(NOTEBOOK, params)
rep = report.Report(NOTEBOOK, params["profile"], title=TITLE, question=QUESTION,
                    directory=study.figures_dir(params))
print(f"{{len(grid.members)}} pool members, {{len(grid.distillations)}} distillations, "
      f"{{len(grid.evaluations)}} evaluations ({{grid.networks}} networks)")'''

RUN = '''\
frame = study.run(grid, executor=params["executor"], workers=params["workers"])
rep.note_missing(frame)
frame.head()'''

WRITE = "rep.write()"

NOTEBOOKS = {
    "00_preliminary": {
        "title": "00 · Preliminary: does a PTM loss help DC, DSA and DM?",
        "question": (
            "Each method (DC, DSA, DM) distills the target with and without CLoM, the "
            "classification loss of a frozen PTM trained on the target, at each IPC and "
            "distillation seed. References: a random real subset of the same size (evaluated with "
            "each method's protocol) and the whole training set."
        ),
        "cells": [
            '''\
distilled = frame[frame["condition"] != "whole dataset"]
whole = frame[frame["condition"] == "whole dataset"]
references = whole.groupby("condition", as_index=False)["accuracy"].mean().rename(
    columns={"condition": "label"})
fig = report.accuracy_plot(distilled, x="method", hue="condition", col="ipc", kind="bar",
                           references=references, title=TITLE)
rep.figure(fig)''',
            '''\
table = report.accuracy_table(frame, rows=["method", "condition", "ipc"])
rep.table(table, caption="Test accuracy (%) of networks trained on each set: mean ± SD over seeds "
                         "(n seeds), and the SD over the networks of one set")
table''',
            '''\
rep.verdict(report.compare(
    frame, {"condition": "+CLoM"}, {"condition": "baseline"}, strata=["method", "ipc"],
    claim="adding a PTM loss (CLoM) improves dataset distillation (DC, DSA and DM together)",
    treatment_name="+CLoM", baseline_name="no PTM loss"))
for method in params["methods"]:
    rep.verdict(report.compare(
        frame[frame["method"] == method], {"condition": "+CLoM"}, {"condition": "baseline"},
        strata=["ipc"], claim=f"CLoM improves {method}", treatment_name=f"{method} + CLoM",
        baseline_name=method))''',
        ],
    },
    "01_initialization": {
        "title": "01 · Initialization: how many PTMs of one architecture?",
        "question": (
            "CLoM with pools of N_m PTMs of one architecture trained from different seeds "
            "(one drawn at random at each use). The paper's claim (1): more model diversity "
            "helps, so the largest pool should beat a single PTM."
        ),
        "cells": [
            '''\
fig = report.accuracy_plot(frame, x="n_models", hue="method", col="ipc",
                           xlabel="PTMs in the pool (N_m; 0 = no PTM)", title=TITLE)
rep.figure(fig)''',
            '''\
table = report.accuracy_table(frame, rows=["method", "n_models"], columns=["ipc"])
rep.table(table, caption="Test accuracy (%) by pool size N_m (0: no PTM loss)")
table''',
            '''\
largest = max(params["n_models"])
rep.verdict(report.compare(
    frame, {"n_models": largest}, {"n_models": 1}, strata=["method", "ipc"],
    claim="(1) more model diversity helps: more PTMs from different seeds beat one",
    treatment_name=f"N_m = {largest}", baseline_name="N_m = 1"))''',
        ],
    },
    "02_architecture": {
        "title": "02 · Architecture: pools of one to four architectures",
        "question": (
            "CLoM with pools of each architecture alone and of growing combinations "
            "(ConvNet, AlexNet, VGG11, ResNet18 in the paper; one architecture drawn at random "
            "at each use). The paper's claim (1): more architectures (more diversity) help."
        ),
        "cells": [
            '''\
order = ["none"] + ["+".join(archs) for archs in study.architecture_pools(params)]
fig = report.accuracy_plot(frame, x="pool", hue="method", col="ipc", order=order, kind="bar",
                           xlabel="PTM pool", title=TITLE)
rep.figure(report.rotate_labels(fig))''',
            '''\
table = report.accuracy_table(frame, rows=["method", "n_archs", "pool"], columns=["ipc"])
rep.table(table, caption="Test accuracy (%) by PTM pool (none: no PTM loss)")
table''',
            '''\
pools = study.architecture_pools(params)
largest = max(pools, key=len)
rep.verdict(report.compare(
    frame, {"pool": "+".join(largest)}, {"pool": pools[0][0]}, strata=["method", "ipc"],
    claim="(1) more architecture diversity helps: a pool of all architectures beats the first alone",
    treatment_name="+".join(largest), baseline_name=pools[0][0]))''',
        ],
    },
    "03_epoch": {
        "title": "03 · Epoch: are early, sub-optimal PTMs useful?",
        "question": (
            "CLoM with PTMs taken after different training epochs, next to each PTM's own test "
            "accuracy. The paper's claim (2): sub-optimal (early-epoch) models can help, "
            "sometimes more than well-trained ones."
        ),
        "cells": [
            '''\
curves = study.pool_frame(grid, per_epoch=True)
curves = curves[curves["epoch"] <= max(params["epochs"])]
guided = frame[frame["condition"] == "+CLoM"]
fig = report.epoch_plot(guided, curves, x="ptm_epoch", hue="method",
                        baseline=frame[frame["condition"] == "baseline"], title=TITLE)
rep.figure(fig)''',
            '''\
table = report.accuracy_table(frame, rows=["method", "condition", "ptm_epoch"], columns=["ipc"])
ptm = curves.groupby("epoch")["test_acc"].mean().mul(100).round(2)
table["PTM test acc %"] = table["ptm_epoch"].map(ptm)
rep.table(table, caption="DD test accuracy (%) by the PTM's training epoch, and the PTM's own test accuracy")
table''',
            '''\
early, final = params["early_epoch"], int(frame["ptm_epoch"].max())
rep.verdict(report.compare(
    frame, {"ptm_epoch": early}, {"condition": "baseline"}, strata=["method", "ipc"],
    claim="(2) sub-optimal (early-epoch) PTMs help",
    treatment_name=f"CLoM, PTM at epoch {early}", baseline_name="no PTM loss"))
rep.verdict(report.compare(
    frame, {"ptm_epoch": early}, {"ptm_epoch": final}, strata=["method", "ipc"], relation=">=",
    margin=1.0, claim="(2) early-epoch PTMs help about as much as (or more than) final ones",
    treatment_name=f"PTM at epoch {early}", baseline_name=f"PTM at epoch {final}"))''',
        ],
    },
    "04_domain": {
        "title": "04 · Domain: PTMs from the target, another dataset, or untrained",
        "question": (
            "CCLoM (the contrastive loss on PTM features) with PTMs trained on the target itself, "
            "on another dataset, or not trained at all (random initialization); CCLoM with "
            "in-domain PTMs next to CLoM. The paper's claim (3): domain-specific PTMs are not "
            "required, but a reasonable domain match is."
        ),
        "cells": [
            '''\
order = [c for c in ("baseline", "CLoM (target PTMs)", "CCLoM (target PTMs)",
                     "CCLoM (other-domain PTMs)", "CCLoM (untrained PTMs)")
         if c in set(frame["condition"])]
fig = report.accuracy_plot(frame, x="condition", hue="method", col="target", order=order,
                           kind="bar", title=TITLE)
rep.figure(report.rotate_labels(fig))''',
            '''\
table = report.accuracy_table(frame, rows=["target", "method", "condition"], columns=["ipc"])
rep.table(table, caption="Test accuracy (%) by the source of the PTMs (CCLoM unless noted)")
table''',
            '''\
other = {"condition": "CCLoM (other-domain PTMs)"}
rep.verdict(report.compare(
    frame, other, {"condition": "baseline"}, strata=["target", "method", "ipc"],
    claim="(3a) domain-specific PTMs are not required: other-domain PTMs (CCLoM) still help",
    treatment_name="CCLoM, other-domain PTMs", baseline_name="no PTM loss"))
rep.verdict(report.compare(
    frame, other, {"condition": "CCLoM (untrained PTMs)"}, strata=["target", "method", "ipc"],
    claim="(3b) a reasonable domain match matters: trained other-domain PTMs beat untrained ones",
    treatment_name="CCLoM, other-domain PTMs", baseline_name="CCLoM, untrained PTMs"))''',
        ],
    },
    "05_alpha": {
        "title": "05 · The weight α of the PTM loss",
        "question": (
            "CLoM with α from 0 (no PTM loss) upwards, and the limit where only the PTM loss is "
            "optimized (the dataset-distillation loss dropped)."
        ),
        "cells": [
            '''\
fig = report.alpha_plot(frame, hue="method", title=TITLE)
rep.figure(fig)''',
            '''\
table = report.accuracy_table(frame, rows=["method", "alpha"], columns=["ipc"])
rep.table(table, caption="Test accuracy (%) by α (inf: the PTM loss alone)")
table''',
            '''\
rep.verdict(report.compare(
    frame, {"default_alpha": True, "ptm_only": False}, {"alpha": 0.0}, strata=["method", "ipc"],
    claim="the PTM loss at the profile's α improves over α = 0",
    treatment_name="α of the profile", baseline_name="α = 0"))
rep.verdict(report.compare(
    frame, {"ptm_only": True}, {"default_alpha": True, "ptm_only": False},
    strata=["method", "ipc"], relation="<",
    claim="the distillation loss is still needed: the PTM loss alone is worse",
    treatment_name="PTM loss only", baseline_name="DD loss + α · PTM loss"))''',
        ],
    },
    "06_cross_architecture": {
        "title": "06 · Cross-architecture: the best options against the baselines",
        "question": (
            "The baseline methods against the same methods with the best options, each "
            "distilled set evaluated on the profile's evaluation architectures (the paper: "
            "ConvNet, AlexNet, VGG11, ResNet18 and their BatchNorm variants). The options are the "
            "profile section `best`, declared before the run from the paper's findings; they are "
            "not picked from the test accuracies the notebooks report. A seed's accuracy is the "
            "mean over its networks and then over the architectures, so each seed is one unit. "
            "The paper's claim (4): the chosen options clearly improve cross-architecture "
            "generalization. Then the cost: pool training time and storage, distillation time "
            "with and without guidance."
        ),
        "cells": [
            '''\
fig = report.accuracy_plot(frame, x="arch", hue="condition", col="method",
                           order=params["eval_archs"], kind="bar", title=TITLE)
rep.figure(report.rotate_labels(fig))''',
            '''\
table = report.accuracy_table(frame, rows=["method", "ipc", "condition"], columns=["arch"])
rep.table(table, caption="Cross-architecture test accuracy (%): mean ± SD over seeds (n seeds)")
table''',
            '''\
pool_cost = report.pool_cost_table(study.pool_frame(grid))
rep.table(pool_cost, name="06_pool_cost", caption="Cost of the PTM pool: training time and storage")
distill_cost = report.distill_cost_table(study.distillation_frame(grid))
rep.table(distill_cost, name="06_distill_cost",
          caption="Distillation time without and with the PTM loss (same machine, same settings)")
display(pool_cost, distill_cost)''',
            '''\
rep.verdict(report.compare(
    frame, {"condition": "best options"}, {"condition": "baseline"},
    strata=["method", "ipc"], average=["arch"],
    claim="(4) the chosen options improve cross-architecture generalization",
    treatment_name="best options", baseline_name="baseline method"))''',
        ],
    },
}


def build(name: str, spec: dict) -> nbformat.NotebookNode:
    """The notebook ``name`` from its entry in :data:`NOTEBOOKS`."""
    intro = (
        f"# {spec['title']}\n\n{spec['question']}\n\n"
        "Runs come from the run store when they exist (nothing is recomputed); missing ones are "
        "computed first. Batch: `ptmdd study --profile smoke --only "
        f"{name}`; here: set `profile` (or `overrides`) below and run all cells."
    )
    question = textwrap.wrap(spec["question"], 90, drop_whitespace=False)
    header = (f"TITLE = {spec['title']!r}\nQUESTION = (\n"
              + "".join(f"    {part!r}\n" for part in question) + ")")
    parameters = new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})
    cells = [new_markdown_cell(intro), parameters, new_code_cell(header),
             new_code_cell(SETUP.format(name=name)), new_code_cell(RUN)]
    cells += [new_code_cell(code) for code in spec["cells"]]
    cells.append(new_code_cell(WRITE))
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                       "name": "python3"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def main(argv: list[str] | None = None) -> int:
    """Write every notebook (or those named in ``argv``)."""
    names = argv or list(NOTEBOOKS)
    out = ROOT / "notebooks"
    out.mkdir(exist_ok=True)
    for name in names:
        notebook = build(name, NOTEBOOKS[name])
        for index, cell in enumerate(notebook.cells):
            cell["id"] = str(index)  # as nbstripout numbers them
        nbformat.validate(notebook)
        nbformat.write(notebook, out / f"{name}.ipynb")
        print(f"wrote {out / f'{name}.ipynb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
