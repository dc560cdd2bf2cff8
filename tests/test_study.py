"""The study: profiles, grids, dry runs and executors (the smoke profile end to end: test_smoke_study.py)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ptmdd_helpers import study

TINY = {
    "shared": {
        "target": "Digits", "other": "MNIST5k8", "device": "cpu", "executor": "local",
        "workers": 1, "seeds": [0], "ipcs": [1], "alpha": 10,
        "distill": {"model": "ConvNetW32", "batch_real": 8, "DM": {"iterations": 3}},
        "cclom_real_batch": 32,
        "pool": {"arch": "ConvNetW32", "n_models": 1, "epoch": "final", "keep_epochs": None,
                 "recipe": {"epochs": 1, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.005,
                            "batch_size": 256, "milestones": [50, 100]}},
        "eval": {"archs": None, "n_nets": 1, "epochs": 3},
    },
    "05_alpha": {"methods": ["DM"], "alphas": [0, 10], "ptm_only": False},
    "03_epoch": {"methods": ["DM"], "epochs": [1], "early_epoch": 1},
}


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, list[str]]:
    """A tiny profile file and the overrides that keep its outputs under ``tmp_path``."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}",
             f"figures_dir={tmp_path / 'figures'}", f"runs_dir={tmp_path / 'runs'}"]
    return path, roots


# --------------------------------------------------------------------------- profiles


def test_profile_merges_shared_notebook_and_overrides(tiny):
    path, _ = tiny
    params = study.load_profile(path, [
        "seeds=[3, 4]",                   # every notebook
        "distill.DM.iterations=7",        # dotted, into a nested section
        "05_alpha.alphas=[0, 1, 100]",    # one notebook only
        "shared.eval.n_nets=2",           # "shared." is the same as no prefix
        "other=null",
    ])
    alpha, epoch = params["05_alpha"], params["03_epoch"]
    assert alpha["profile"] == "tiny"
    assert alpha["seeds"] == epoch["seeds"] == [3, 4]
    assert alpha["distill"] == {"model": "ConvNetW32", "batch_real": 8, "DM": {"iterations": 7}}
    assert alpha["alphas"] == [0, 1, 100] and epoch["alphas"] is None
    assert alpha["eval"] == {"n_nets": 2, "epochs": 3}  # validated: a section's nulls left out
    assert alpha["other"] is None
    assert epoch["epochs"] == [1] and alpha["methods"] == ["DM"]


def test_bad_profiles_and_overrides_are_clear_errors(tiny, tmp_path):
    path, _ = tiny
    with pytest.raises(study.StudyError, match="expects key=value"):
        study.load_profile(path, ["seeds"])
    with pytest.raises(study.StudyError, match="unknown profile 'nope'"):
        study.load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("shared: {}\n07_extra: {}\n")
    with pytest.raises(study.StudyError, match="unknown sections"):
        study.load_profile(bad)


def test_the_committed_profiles_build_every_grid():
    for profile in ("smoke", "cpu", "paper", "gpu"):
        params = study.load_profile(profile)
        for notebook in study.NOTEBOOKS:
            grid = study.build_grid(notebook, params[notebook])
            assert grid.evaluations, (profile, notebook)


def test_notebooks_are_thin_and_committed_without_outputs():
    for notebook in study.NOTEBOOKS:
        cells = json.loads(study.notebook_path(notebook).read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, notebook
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for cell in cells:
            assert not cell.get("outputs") and cell.get("execution_count") is None, notebook
        assert "study.run(grid" in code and "rep.verdict(" in code and "rep.write()" in code
        for forbidden in ("import torch", "nn.", "optimizer", ".backward(", "train_member"):
            assert forbidden not in code, (notebook, forbidden)


# --------------------------------------------------------------------------- grids


def test_smoke_grid_sizes():
    params = study.load_profile("smoke")
    sizes = {nb: study.build_grid(nb, params[nb]) for nb in study.NOTEBOOKS}
    got = {nb: (len(g.members), len(g.initial), len(g.distillations), len(g.evaluations),
                g.networks) for nb, g in sizes.items()}
    assert got == {
        # 4 methods × 2 seeds × (baseline, +CLoM), each also evaluated at its 5-iteration
        # snapshot (no extra distillation); random real under 2 protocols × 2 seeds (MTT's is
        # DSA's and DM's: a real subset learned no lr); whole; 1 PTM and MTT's 2 experts
        "00_preliminary": (3, 0, 16, 16 * 2 + 4 + 1, 16 * 2 * 2 + 4 * 2 + 1),
        "01_initialization": (3, 0, 2 * (1 + 3), 8, 16),      # N_m ∈ {1, 2, 3} + baseline
        # 4 alone, 3 growing, their 3 count-matched controls (ConvNetW32 ×2, ×3, ×4), baseline
        "02_architecture": (7, 0, 2 * (1 + 4 + 3 + 3), 22, 44),
        "03_epoch": (1, 0, 2 * (1 + 3), 8, 16),               # epochs 1, 2, 3 + baseline
        "04_domain": (2, 1, 2 * 5, 10, 20),                   # baseline + 4 PTM conditions
        "05_alpha": (1, 0, 2 * 6, 12, 24),                    # 5 α + the PTM loss alone
        "06_cross_architecture": (4, 0, 4, 4 * 9, 36),        # 2 × 2 sets on 9 architectures
    }
    seeds = study.load_profile("smoke", ["seeds=[0, 1, 2]"])["01_initialization"]
    assert len(study.build_grid("01_initialization", seeds).distillations) == 3 * 4


def test_grid_specs_carry_the_profile_settings():
    params = study.load_profile("smoke")["04_domain"]
    grid = study.build_grid("04_domain", params)
    labels = {dict(item.labels)["condition"]: item.spec for item in grid.items}
    other = labels["CCLoM (other-domain PTMs)"].subject
    untrained = labels["CCLoM (untrained PTMs)"].subject
    assert other.dataset == "Digits" and other.guidance.source == "MNIST5k8"
    assert other.guidance.kind == "cclom" and other.guidance.real_batch == 128
    assert untrained.guidance.epoch == 0 and untrained.guidance.source == "Digits"
    assert other.iterations == 60 and other.model == "ConvNetW32" and other.batch_real == 32
    assert labels["baseline"].subject.guidance is None
    assert labels["baseline"].protocol.epochs == 60 and labels["baseline"].n_nets == 2


def test_the_cpu_profiles_04_has_a_near_and_a_far_domain_and_02_a_count_matched_control():
    params = study.load_profile("cpu")
    domain = study.build_grid("04_domain", params["04_domain"])
    rows = [dict(item.labels) for item in domain.items]
    sources = {(r["condition"], r["ptm_source"]) for r in rows}
    assert sources == {("baseline", "none"), ("CCLoM (target PTMs)", "MNIST"),
                       ("CCLoM (other-domain PTMs)", "Digits28"),
                       ("CCLoM (other-domain PTMs)", "FashionMNIST"),
                       ("CCLoM (untrained PTMs)", "untrained")}
    assert {r["target"] for r in rows} == {"MNIST"}
    # one baseline per seed (not one per other domain): 5 sets of 10 seeds, every one once
    assert len(rows) == len(domain.evaluations) == 50
    assert (params["04_domain"]["near"], params["04_domain"]["far"]) == ("Digits28", "FashionMNIST")
    architecture = study.build_grid("02_architecture", params["02_architecture"])
    pools = {}
    for item in architecture.items:
        labels = dict(item.labels)
        guidance = item.spec.subject.guidance
        if guidance is not None:
            pools[labels["pool"]] = (labels["n_members"], guidance.archs, guidance.n_models)
    assert pools == {"ConvNetW32": (1, ("ConvNetW32",), 1),
                     "ConvNetW32+LeNet+MLP+AlexNet": (4, ("ConvNetW32", "LeNet", "MLP", "AlexNet"), 1),
                     "ConvNetW32 ×4": (4, ("ConvNetW32",), 4)}
    for name in ("early_vs_plateau", "far_like_untrained"):  # margins declared with a reason
        claim = params["03_epoch"]["claims"][name]
        assert claim["margin"] == 0.15 and claim["why"]


# --------------------------------------------------------------------------- dry run, executors


def test_dry_run_counts_before_and_after_computing(tiny):
    path, roots = tiny
    before = io.StringIO()
    rows = study.dry_run(path, roots, only=["05_alpha"], file=before)
    alpha = rows[0]
    assert (alpha.members, alpha.distillations, alpha.evaluations, alpha.networks) == \
        ((0, 1), (0, 2), (0, 2), (0, 2))
    assert "05_alpha" in before.getvalue() and "0/2" in before.getvalue()
    params = study.load_profile(path, roots)["05_alpha"]
    grid = study.build_grid("05_alpha", params)
    results = study.compute(grid, verbose=False)
    assert sorted(status for status, _ in results.values()) == ["computed"] * 5
    after = study.dry_run(path, roots, only=["05_alpha"], file=io.StringIO())[0]
    assert (after.members, after.distillations, after.evaluations, after.networks) == \
        ((1, 1), (2, 2), (2, 2), (2, 2))
    frame = study.run(grid, verbose=False)
    assert len(frame) == 2 and sorted(frame["alpha"]) == [0.0, 10.0]
    assert {"subject.guidance.alphas", "protocol.epochs", "accuracy", "condition"} <= set(frame)
    assert frame["accuracy"].between(0, 1).all()


def test_slurm_executor_through_submitit_local(tiny):
    path, roots = tiny
    params = study.load_profile(path, [*roots, "slurm={cluster: local, timeout_min: 5}"])
    grid = study.build_grid("03_epoch", params["03_epoch"])
    results = study.compute(grid, executor="slurm", workers=2, verbose=False)
    assert {k.split("-")[0].split(":")[0] for k in results} == {"member", "distill", "evaluation"}
    assert all(status == "computed" for status, _ in results.values())
    store = study.workspace(params["03_epoch"]).store
    assert len(store.runs("distill")) == 2 and len(store.runs("evaluation")) == 2
    logs = list((study.batch_dir(params["03_epoch"]) / "submitit").glob("*_log.out"))
    assert logs, "submitit wrote no job logs"
    assert study.compute(grid, executor="slurm", workers=2, verbose=False) == {}


def test_cli_dry_run_of_the_paper_profile(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ptmdd_helpers.cli.commands", "study", "--profile", "paper", "--dry-run",
         "--set", f"store={tmp_path / 'store'}", "--set", f"pool_root={tmp_path / 'pools'}"],
        capture_output=True, text=True, check=True,
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("06_cross_architecture") for line in lines)
    total = next(line for line in lines if line.startswith("total"))
    assert re.search(r"0/\d+", total)


def test_a_failing_notebook_is_a_study_error_naming_the_cell(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("value = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise RuntimeError(f'bad value {value}')"),
    ], metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    source = tmp_path / "broken.ipynb"
    nbformat.write(notebook, source)
    target = tmp_path / "out" / "broken.ipynb"
    target.parent.mkdir()
    expected = (r"broken failed at execution count \d+: RuntimeError: bad value 7; "
                r"the executed notebook .* is .*out/broken.ipynb")
    with pytest.raises(study.StudyError, match=expected):
        study.execute_notebook(source, target, {"value": 7})
    assert target.is_file()
