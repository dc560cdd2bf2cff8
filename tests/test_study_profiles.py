"""Profiles checked against the schema: every bad input names its key and the fix, via the API and
the CLI (exit 2, no traceback, nothing written); paths resolved by one rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ptmdd_helpers import paths, study
from ptmdd_helpers.cli import commands as cli

# (override or profile edit, words the message must contain)
BAD_OVERRIDES = [
    ("ipcs=1", ["`ipcs`", "expected a list"]),
    ("distill.DM.iteratons=5", ["unknown key `distill.DM.iteratons`", "iterations"]),
    ("nonexistent.key=1", ["unknown key `nonexistent`"]),
    ("seeds=abc", ["`seeds`", "expected a list"]),
    ("seeds=[a, b]", ["`seeds.0`", "expected an integer", "'a'"]),
    ("eval.n_nets=two", ["`eval.n_nets`", "expected an integer", "'two'"]),
    ("05_alpha.alphas=[x]", ["`alphas.0`", "a number", "(in 05_alpha)"]),
    ("pool.epoch=-1", ["`pool.epoch`: expected a value >= 0 or 'final'"]),
    ("methods=[XX]", ["`methods.0`", "DC", "DSA", "DM"]),
    ("executor=foo", ["`executor`", "local", "slurm"]),
    ("workers=0", ["`workers`: expected a value >= 1, got 0"]),
    ("seeds=[0", ["not valid YAML"]),
    ("seeds", ["expects key=value"]),
    # a notebook's own value for a method it does not run would be ignored
    ("01_initialization.alpha={DC: 5}", ["01_initialization.alpha.DC (its methods: DM)",
                                         "move the value to shared"]),
    ("03_epoch.distill.DSA.iterations=3", ["03_epoch.distill.DSA (its methods: DM)"]),
    ("05_alpha.eval.MTT.epochs=3", ["05_alpha.eval.MTT (its methods: DM)"]),
]


@pytest.mark.parametrize("override, words", BAD_OVERRIDES, ids=[b[0] for b in BAD_OVERRIDES])
def test_a_bad_override_names_the_key_and_the_fix(override, words):
    with pytest.raises(study.StudyError) as raised:
        study.load_profile("smoke", [override])
    message = str(raised.value)
    for word in words:
        assert word in message, (word, message)
    assert "\n" not in message  # one paragraph


def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edited.yaml"
    path.write_text(text)
    return path


def test_broken_yaml_names_the_line(tmp_path):
    path = _profile(tmp_path, "shared:\n  seeds: [0, 1\n  ipcs: [1]\n")
    with pytest.raises(study.StudyError, match=r"edited.yaml is not valid YAML at line \d+"):
        study.load_profile(path)


def test_a_wrong_type_in_the_file_names_the_profile_and_the_notebook(tmp_path):
    smoke = yaml.safe_load((paths.project_root() / "parameters" / "smoke.yaml").read_text())
    smoke["06_cross_architecture"]["eval"]["n_nets"] = "two"
    with pytest.raises(study.StudyError) as raised:
        study.load_profile(_profile(tmp_path, yaml.safe_dump(smoke)))
    message = str(raised.value)
    assert "profile edited" in message and "edited.yaml" in message
    assert "`eval.n_nets`: expected an integer, got 'two' (in 06_cross_architecture)" in message


def test_every_committed_profile_passes_the_schema():
    profiles = sorted(p.stem for p in (paths.project_root() / "parameters").glob("*.yaml"))
    assert {"smoke", "cpu", "paper", "gpu"} <= set(profiles)
    for profile in profiles:
        params = study.load_profile(profile)
        assert set(params) == set(study.NOTEBOOKS)


def test_a_profile_without_a_notebooks_section_names_what_it_lacks():
    params = study.load_profile("cpu_mtt_val")  # shared and 00 only
    assert study.build_grid("00_preliminary", params["00_preliminary"]).distillations
    lacking = [("01_initialization", "n_models"), ("06_cross_architecture", "best, eval_archs")]
    for notebook, keys in lacking:
        expected = (rf"{notebook}: the profile cpu_mtt_val gives no {keys}; add the notebook's "
                    r"section .* or leave the notebook out")
        with pytest.raises(study.StudyError, match=expected):
            study.build_grid(notebook, params[notebook])


def test_the_gpu_profiles_ten_minute_subset_is_what_its_header_says():
    overrides = ["ipcs=[1]", "00_preliminary.methods=[DC]",
                 "00_preliminary.references.random_real=false",
                 "00_preliminary.references.whole=null", "distill.snapshots=[100,300]",
                 "eval.n_nets=10"]
    header = (paths.project_root() / "parameters" / "gpu.yaml").read_text()
    assert all(f"--set '{o}'" in header or f"--set {o}" in header for o in overrides)
    params = study.load_profile("gpu", overrides)["00_preliminary"]
    grid = study.build_grid("00_preliminary", params)
    assert len(grid.distillations) == 20  # 10 seeds, baseline and CLoM
    assert {(d.method, d.ipc, d.iterations, d.model, d.dataset) for d in grid.distillations} == \
        {("DC", 1, 1000, "ConvNet", "FashionMNIST")}
    assert {e.n_nets for e in grid.evaluations} == {10}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("argv, words", [
    (["--set", "ipcs=1"], ["`ipcs`", "--set"]),
    (["--set", "distill.DM.iteratons=5"], ["iteratons"]),
    (["--set", "seeds=abc"], ["`seeds`"]),
    (["--only", "07"], ["unknown notebook '07'"]),
    (["--profile", "nope"], ["unknown profile 'nope'"]),
    (["--profile", "missing.yaml"], ["no profile file"]),
])
def test_cli_study_refuses_bad_input_with_exit_2(tmp_path, capsys, argv, words):
    roots = ["--set", f"store={tmp_path / 'store'}", "--set", f"pool_root={tmp_path / 'pools'}",
             "--set", f"figures_dir={tmp_path / 'figures'}", "--set", f"runs_dir={tmp_path / 'runs'}"]
    code = cli.main(["study", *argv, *roots])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    for word in words:
        assert word in captured.err, (word, captured.err)
    assert _tree(tmp_path) == set()  # nothing written


# --------------------------------------------------------------------------- paths


def test_paths_follow_argument_profile_environment_default(tmp_path, monkeypatch):
    monkeypatch.setenv("PTMDD_RUNS", str(tmp_path / "env"))
    profile = {"profile": "p", "store": str(tmp_path / "from-profile")}
    assert paths.resolve("store", tmp_path / "arg", profile) == tmp_path / "arg"
    assert paths.resolve("store", None, profile) == tmp_path / "from-profile"
    assert paths.resolve("store", None, {"profile": "p"}) == tmp_path / "env"
    monkeypatch.delenv("PTMDD_RUNS")
    monkeypatch.chdir(tmp_path)  # outside the project: relative to the working directory
    assert paths.resolve("store") == tmp_path / "runs" / "store"
    assert paths.resolve("figures", profile={"profile": "p"}) == tmp_path / "figures" / "p"
    monkeypatch.chdir(paths.project_root() / "tests")  # inside: relative to the project root
    assert paths.resolve("store") == paths.project_root() / "runs" / "store"
    # a profile's relative path is relative to the project root, not the working directory
    assert paths.resolve("data", profile={"data_root": "../shared/data"}) == \
        paths.project_root() / "../shared/data"


def test_a_root_that_is_a_file_is_refused_naming_the_option(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(paths.PathError, match="--store, the profile key 'store' or \\$PTMDD_RUNS"):
        paths.resolve("store", afile)
    with pytest.raises(paths.PathError, match="--pool-root"):
        paths.resolve("pools", afile)


def test_no_import_cycle_between_report_and_study():
    import subprocess
    import sys

    code = ("import sys, ptmdd_helpers.report.tables; "
            "print('ptmdd_helpers.study' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == "False"


def test_a_notebooks_value_for_a_method_it_runs_or_a_shared_one_is_accepted():
    params = study.load_profile("smoke", ["01_initialization.alpha={DM: 5}", "alpha.DC=7"])
    assert params["01_initialization"]["alpha"]["DM"] == 5.0
    assert params["00_preliminary"]["alpha"]["DC"] == 7.0  # shared: every notebook's default
    # naming the method in the notebook makes its own value used
    params = study.load_profile("smoke", ["03_epoch.methods=[DM, DSA]", "03_epoch.distill.DSA.iterations=3"])
    assert params["03_epoch"]["distill"]["DSA"]["iterations"] == 3

