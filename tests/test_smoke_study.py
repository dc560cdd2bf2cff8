"""The smoke profile end to end: every figure, table and verdict, a second batch that computes
nothing, and a frame with every spec field (in a file of its own, so that a parallel run gives the
study its own worker)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ptmdd_helpers import report, study
from ptmdd_helpers.store.runstore import RunStore


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# The smoke profile's grids (every task, notebook, figure, table and verdict) at a lower cost per
# task: DM and MTT 6 iterations instead of 60 and 20 (still above the 5-iteration snapshot of every
# distillation, so the same runs are stored), evaluations of 5 epochs instead of 60, 06's nine
# evaluation architectures (VGG11, ResNet18: most of its time) trained 1 epoch instead of 20, and
# the whole-dataset reference 2 epochs instead of 10, and in 02's pools a one-layer ConvNet
# (ConvNetD1) in AlexNet's place (AlexNet's three epochs on Digits cost more than all the other
# pool members together; 06 still evaluates on AlexNet). What the tests check (files, verdicts
# from the data, run counts, a second batch that computes nothing) depends on which tasks run and
# how the grids are shaped, not on how long each one trains or which architecture fills a slot.
CHEAPER = ["distill.DM.iterations=6", "distill.MTT.iterations=6", "eval.epochs=5",
           "06_cross_architecture.eval.epochs=1", "00_preliminary.references.whole.epochs=2",
           "02_architecture.archs=[ConvNetW32, ConvNetD1, LeNet, MLP]"]


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke profile run once, end to end, into a temporary folder."""
    base = tmp_path_factory.mktemp("smoke-study")
    roots = [f"store={base / 'store'}", f"pool_root={base / 'pools'}",
             f"figures_dir={base / 'figures'}", f"runs_dir={base / 'runs'}", *CHEAPER]
    result = study.run_study("smoke", overrides=roots, verbose=False)
    return base, roots, result


def test_smoke_study_writes_every_figure_table_and_verdict(smoke):
    base, _, result = smoke
    figures = base / "figures"
    assert len(result["notebooks"]) == 7 and all(p.is_file() for p in result["notebooks"])
    for notebook in study.NOTEBOOKS:
        for ext in ("png", "pdf"):
            assert (figures / f"{notebook}.{ext}").stat().st_size > 1000, (notebook, ext)
        for ext in ("md", "tex"):
            assert (figures / f"{notebook}_table.{ext}").stat().st_size > 50, (notebook, ext)
        verdicts = json.loads((figures / f"{notebook}.verdicts.json").read_text())
        assert verdicts and all(v["label"] in report.LABELS for v in verdicts)
        executed = json.loads((base / "runs" / "notebooks" / f"{notebook}.ipynb").read_text())
        outputs = "".join(
            "".join(out.get("text", "")) for cell in executed["cells"]
            for out in cell.get("outputs", [])
        )
        found = re.findall(r"Verdict: (supported|not supported|inconclusive)", outputs)
        assert len(found) == len(verdicts), notebook
        # the batch computed the grids first; the notebooks read them from the store
        assert "computing" not in outputs, notebook
        shown = outputs + "".join(
            "".join(out.get("data", {}).get("text/plain", "")) for cell in executed["cells"]
            for out in cell.get("outputs", []))
        for noise in ("TqdmWarning", "Verdict(claim=", "PosixPath(", "IProgress"):
            assert noise not in shown, (notebook, noise)
    for notebook in study.NOTEBOOKS:  # the synthetic sets of one seed, side by side
        assert (figures / f"{notebook}_images.png").stat().st_size > 5000, notebook
        assert f"({notebook}_images.png)" in (figures / "README.md").read_text()
    for notebook in ("01_initialization", "02_architecture"):  # gain against pool diversity
        assert (figures / f"{notebook}_diversity.png").stat().st_size > 5000, notebook
        table = (figures / f"{notebook}_diversity_table.md").read_text()
        assert "disagreement" in table and "cka_distance" in table and "gain" in table
    lrs = (figures / "00_preliminary_lrs.md").read_text()  # DD-Ranking's scores beside accuracy
    assert "LRS" in lrs and "HLR" in lrs and "IOR" in lrs and "±" in lrs
    for name in ("06_pool_cost", "06_distill_cost"):
        assert (figures / f"{name}.md").is_file() and (figures / f"{name}.tex").is_file()
    index = (figures / "README.md").read_text()
    for notebook in study.NOTEBOOKS:
        assert f"({notebook}.png)" in index
    assert index.count("**inconclusive**") + index.count("**supported**") + \
        index.count("**not supported**") >= 7


def test_second_smoke_batch_computes_nothing(smoke):
    base, roots, _ = smoke
    store = base / "store"
    before = _files(store), _files(base / "pools")
    runs = len(RunStore(store).runs())
    again = study.run_study("smoke", overrides=roots, notebooks=False, verbose=False)
    assert again["results"] == {}
    assert (_files(store), _files(base / "pools")) == before
    # 54 distillations, each with its 5-iteration snapshot (distill.snapshots), + 109 evaluations
    assert len(RunStore(store).runs()) == runs == 54 * 2 + 109


def test_smoke_frame_holds_every_spec_field(smoke):
    _, roots, _ = smoke
    params = study.load_profile("smoke", roots)["02_architecture"]
    frame = study.run(study.build_grid("02_architecture", params), verbose=False)
    assert len(frame) == 44  # 2 seeds × 11 sets (baseline, 7 pools, 3 matched controls) × 2 nets
    assert {"pool", "n_archs", "subject.guidance.archs", "subject.iterations", "arch", "net",
            "protocol.epochs", "accuracy", "run_id"} <= set(frame.columns)
    assert frame["accuracy"].between(0, 1).all()
    assert set(frame["n_archs"]) == {0, 1, 2, 3, 4}
    # each field once: the labels ipc and method, not also the spec's subject.ipc, subject.method
    assert {"ipc", "method"} <= set(frame) and not {"subject.ipc", "subject.method"} & set(frame)
    assert not [c for c in frame.columns if c.startswith("row.")]
