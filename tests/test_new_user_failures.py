"""Failures a new user met, each now a clean error or correct behaviour (real runs on Digits).

Tables: command lines refused with exit 2, one message and nothing written; Python calls refused
with a ValueError naming the argument; PTMDD_COMPILE's values; `--recompute` of failing
distillations; evaluations resumed after an interrupt; legacy MTT sets without their learned lr;
notebook kernels started without the TCP warning.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptmdd_helpers import paths
from ptmdd_helpers.checks import MAX_EVAL_NETS
from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.distill import make_spec, protocol_for
from ptmdd_helpers.evaluation import evaluate
from ptmdd_helpers.networks import compiling
from ptmdd_helpers.pools import pool as pools
from ptmdd_helpers.pools.members import MTT_EXPERT_RECIPE
from ptmdd_helpers.pools.pretrain import train_pool
from ptmdd_helpers.store.evaluations import evaluation_run
from ptmdd_helpers.store.runfiles import FILES_KEY, QUARANTINE_DIR
from ptmdd_helpers.store.runs import EvaluationSpec, RealSubsetSpec, Workspace, distill_run
from ptmdd_helpers.store.runstore import RunStore

TINY = ["--eval-nets", "1", "--eval-epochs", "1", "--quiet", "--device", "cpu"]


def files(root: Path) -> list[tuple[str, int, int]]:
    """Every file under ``root`` with its size and modification time (what 'nothing written' compares)."""
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store with one tiny DC distillation of Digits (2 iterations) and its evaluation."""
    base = tmp_path_factory.mktemp("stored")
    assert main(["distill", "--dataset", "Digits", "--method", "DC", "--ipc", "1", "--iterations",
                 "2", "--store", str(base / "store"), "--pool-root", str(base / "pools"),
                 *TINY]) == 0
    (run,) = RunStore(base / "store").runs("distill")
    return base / "store", run.id


@pytest.fixture
def store_copy(stored, tmp_path):
    """A copy of the stored store to damage, and its distillation's id."""
    shutil.copytree(stored[0], tmp_path / "store")
    return tmp_path / "store", stored[1]


# --------------------------------------------------------------------------- command lines: exit 2

def _argv(case: str, store: Path, run_id: str, tmp: Path) -> list[str]:
    (tmp / "a_file").write_text("not a folder")
    real = ["evaluate", "--random-real", "Digits", "1", *TINY]
    return {
        "export-out-is-a-file": ["export", run_id, "--out", str(tmp / "a_file"), "--store", str(store)],
        "export-out-parent-is-a-file": ["export", run_id, "--out", str(tmp / "a_file" / "sub"),
                                        "--store", str(store)],
        "evaluate-whole-and-random-real": ["evaluate", "--whole", "Digits", "--random-real", "Digits",
                                           "1", "--store", str(store), *TINY],
        "evaluate-run-and-whole": ["evaluate", run_id, "--whole", "Digits", "--store", str(store),
                                   *TINY],
        "runs-list-unknown-kind": ["runs", "list", "--kind", "foo", "--store", str(store)],
        "runs-check-unknown-kind": ["runs", "check", "--kind", "foo", "--store", str(store)],
        "empty-store": [*real, "--store", ""],
        "empty-pool-root": [*real, "--store", str(store), "--pool-root", ""],
        "empty-data-root": [*real, "--store", str(store), "--data-root", ""],
        "evaluate-too-many-nets": [*real, "--store", str(store), "--eval-nets", "100000000000"],
        "distill-too-many-nets": ["distill", "--dataset", "Digits", "--method", "DC", "--ipc", "1",
                                  "--iterations", "2", "--store", str(store), *TINY,
                                  "--eval-nets", "100000000000"],
        "bad-PTMDD_COMPILE": [*real, "--store", str(store)],
    }[case]


CLI_CASES = [
    ("export-out-is-a-file", "is a file, not a folder"),
    ("export-out-parent-is-a-file", "cannot write the export to --out"),
    ("evaluate-whole-and-random-real", "give one training set to evaluate, not --random-real and "
                                       "--whole"),
    ("evaluate-run-and-whole", "not a run id and --whole"),
    ("runs-list-unknown-kind", "--kind 'foo' is not a kind of run; valid: distill, evaluation"),
    ("runs-check-unknown-kind", "--kind 'foo' is not a kind of run; valid: distill, evaluation"),
    ("empty-store", "--store (the store root argument) is empty"),
    ("empty-pool-root", "--pool-root (the pools root argument) is empty"),
    ("empty-data-root", "--data-root (the data root argument) is empty"),
    ("evaluate-too-many-nets", f"--eval-nets must be at most {MAX_EVAL_NETS} evaluation networks"),
    ("distill-too-many-nets", f"--eval-nets must be at most {MAX_EVAL_NETS} evaluation networks"),
    ("bad-PTMDD_COMPILE", "PTMDD_COMPILE is 'maybe', which is neither on nor off"),
]


@pytest.mark.parametrize(("case", "message"), CLI_CASES, ids=[c for c, _ in CLI_CASES])
def test_bad_command_lines_exit_2_with_one_message_and_write_nothing(
        case, message, store_copy, tmp_path, capsys, monkeypatch):
    store, run_id = store_copy
    if case == "bad-PTMDD_COMPILE":
        monkeypatch.setenv("PTMDD_COMPILE", "maybe")
    monkeypatch.chdir(tmp_path)  # an empty root would otherwise fall back to a folder here
    argv = _argv(case, store, run_id, tmp_path)
    before, around = files(store), sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith(f"ptmdd {argv[0]}: error: ") and err.count("\n") == 1
    assert files(store) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == around


@pytest.mark.parametrize("failure", ["no-write-permission", "write-fails"])
def test_an_unwritable_export_folder_is_a_clean_error(failure, stored, tmp_path, capsys,
                                                      monkeypatch):
    """Tests run as root, for whom chmod does not stop writes: the two code paths of a read-only
    --out are driven directly (the access check, and an OSError while writing)."""
    import ptmdd_helpers.store.export as export

    out = tmp_path / "out"
    if failure == "no-write-permission":
        access = export.os.access
        monkeypatch.setattr(export.os, "access",
                            lambda path, mode: Path(path) != out and access(path, mode))
    else:
        def refuse(obj, path):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(export, "atomic_torch_save", refuse)
    assert main(["export", stored[1], "--out", str(out), "--store", str(stored[0])]) == 2
    err = capsys.readouterr().err
    assert "cannot write the export to --out" in err and "ermission denied" in err
    assert "Traceback" not in err and not list(out.iterdir())


# --------------------------------------------------------------------------- Python calls

def _nan_images(digits):
    images = digits.train_images[:20].clone()
    images[3, 0, 2, 2] = float("nan")
    return images


def _inf_images(digits):
    images = digits.train_images[:20].clone()
    images[0, 0, 0, 0] = float("inf")
    return images


def _call(case: str, digits, tmp: Path):
    workspace = Workspace(tmp / "store", progress=False, device="cpu")
    spec = make_spec("Digits", "DC", 1, iterations=2)
    protocol = protocol_for("DC", epochs=1)
    labels = digits.train_labels[:20]
    return {
        "distill_run-spec-None": lambda: distill_run(None, workspace),
        "distill_run-workspace-None": lambda: distill_run(spec, None),
        "evaluation_run-workspace-None": lambda: evaluation_run(
            EvaluationSpec(RealSubsetSpec("Digits", 1), "ConvNet", 1, protocol), None),
        "evaluate_images-seed_parts-None": lambda: evaluate.evaluate_images(
            digits.train_images[:20], labels, digits, ["ConvNet"], 1, protocol, None,
            progress=False),
        "evaluate_images-nan-images": lambda: evaluate.evaluate_images(
            _nan_images(digits), labels, digits, ["ConvNet"], 1, protocol, ("x",), progress=False),
        "train_and_test-inf-images": lambda: evaluate.train_and_test(
            _inf_images(digits), labels, digits, "ConvNet", protocol, ("x",)),
        "evaluate_images-too-many-nets": lambda: evaluate.evaluate_images(
            digits.train_images[:20], labels, digits, ["ConvNet"], 10**11, protocol, ("x",),
            progress=False),
        "EvaluationSpec-too-many-nets": lambda: EvaluationSpec(RealSubsetSpec("Digits", 1),
                                                               "ConvNet", 10**11, protocol),
        "recipe_identity-None": lambda: pools.recipe_identity(None),
        "load_pool-epoch-minus-1": lambda: pools.load_pool("Digits", ["ConvNet"], 1, -1,
                                                           root=tmp / "pools"),
        "load_pool-no-archs": lambda: pools.load_pool("Digits", [], 1, 1, root=tmp / "pools"),
        "RunStore-empty-root": lambda: RunStore(""),
        "Workspace-empty-pool-root": lambda: Workspace(tmp / "store", pool_root=""),
        "profile-empty-store": lambda: paths.resolve("store", profile={"store": ""}),
    }[case]


API_CASES = [
    ("distill_run-spec-None", "distill_run: spec must be a DistillSpec"),
    ("distill_run-workspace-None", "distill_run: workspace must be a Workspace"),
    ("evaluation_run-workspace-None", "evaluation_run: workspace must be a Workspace"),
    ("evaluate_images-seed_parts-None", "evaluate_images seed_parts must be a non-empty tuple"),
    ("evaluate_images-nan-images", "the training images hold NaN or infinite values (1 of"),
    ("train_and_test-inf-images", "the training images hold NaN or infinite values (1 of"),
    ("evaluate_images-too-many-nets", f"n_nets (evaluation networks per architecture) must be at "
                                      f"most {MAX_EVAL_NETS}"),
    ("EvaluationSpec-too-many-nets", f"must be at most {MAX_EVAL_NETS} evaluation networks"),
    ("recipe_identity-None", "recipe_identity recipe must be a TrainRecipe"),
    ("load_pool-epoch-minus-1", "load_pool epoch must be a whole number ≥ 0, got -1: give 0"),
    ("load_pool-no-archs", "give at least one architecture, e.g. ['ConvNet']"),
    ("RunStore-empty-root", "(the store root argument) is empty"),
    ("Workspace-empty-pool-root", "(the pools root argument) is empty"),
    ("profile-empty-store", "the profile key 'store' is empty"),
]


@pytest.mark.parametrize(("case", "message"), API_CASES, ids=[c for c, _ in API_CASES])
def test_bad_python_calls_raise_a_value_error_naming_the_argument(case, message, digits, tmp_path):
    with pytest.raises(ValueError) as raised:
        _call(case, digits, tmp_path)()
    assert message in str(raised.value)
    assert "--epochs -1" not in str(raised.value) and "[[]]" not in str(raised.value)
    assert not (tmp_path / "store").exists() and not (tmp_path / "pools").exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("0", False), ("false", False), ("FALSE", False), ("no", False), ("Off", False),
    ("1", True), ("true", True), ("Yes", True), ("ON", True), ("", True), (None, True),
    ("maybe", ValueError), ("2", ValueError),
])
def test_ptmdd_compile_takes_on_and_off_words(value, expected, monkeypatch):
    if value is None:
        monkeypatch.delenv("PTMDD_COMPILE", raising=False)
    else:
        monkeypatch.setenv("PTMDD_COMPILE", value)
    if expected is ValueError:
        with pytest.raises(ValueError, match=f"PTMDD_COMPILE is {value!r}"):
            compiling.compile_default()
    else:
        assert compiling.compile_default() is expected


# --------------------------------------------------------------------------- --recompute

def _damage(run_folder: Path, how: str) -> None:
    if how == "missing-file":
        (run_folder / "grid.png").unlink()
    else:  # same size, other bytes: only the checksum sees it
        data = bytearray((run_folder / "tensors.pt").read_bytes())
        data[-200] ^= 1
        (run_folder / "tensors.pt").write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["missing-file", "changed-bytes", "failing-evaluation"])
def test_evaluate_recompute_recomputes_a_failing_distillation(how, store_copy, stored, capsys):
    store, run_id = store_copy
    original = RunStore(stored[0]).load(run_id).tensors()["images"]
    if how == "failing-evaluation":  # the evaluation run, not the distillation, fails
        (evaluation,) = RunStore(store).runs("evaluation")
        (evaluation.path / "provenance.json").unlink()
        run_id, recomputed = evaluation.id, run_id
    else:
        _damage(store / run_id, how)
        recomputed = run_id
    argv = ["evaluate", recomputed, "--store", str(store), *TINY]
    if how == "missing-file":  # refused without the flag, which the message names
        assert main(argv) == 2
        assert "--recompute" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*argv, "--recompute"]) == 0
    err = capsys.readouterr().err
    assert "error" not in err and "with --recompute" not in err and "computing it again" in err
    (moved,) = (store / QUARANTINE_DIR).iterdir()
    assert moved.name.startswith(run_id)
    assert [c.status for c in RunStore(store).check()] == ["verified", "verified"]
    assert torch.equal(RunStore(store).load(recomputed).tensors()["images"], original)


# --------------------------------------------------------------------------- interrupted evaluation

def _interrupt_at(monkeypatch, call: int | None, calls: list) -> None:
    """Make ``evaluate._train_and_test`` count its calls and raise KeyboardInterrupt at ``call``."""
    train = evaluate._train_and_test

    def counted(*args, **kwargs):
        calls.append(args[7])  # the network's seed parts
        if call is not None and len(calls) == call:
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(evaluate, "_train_and_test", counted)


def test_an_interrupted_evaluation_keeps_its_finished_networks(tmp_path, capsys, monkeypatch):
    argv = ["evaluate", "--random-real", "Digits", "1", "--eval-nets", "3", "--eval-epochs", "2",
            "--quiet", "--device", "cpu"]
    straight: list = []
    _interrupt_at(monkeypatch, None, straight)
    assert main([*argv, "--store", str(tmp_path / "a")]) == 0
    straight = list(straight)  # the wrappers below call through this one, which keeps counting
    first: list = []
    _interrupt_at(monkeypatch, 3, first)  # networks 0 and 1 finish, network 2 is interrupted
    capsys.readouterr()
    assert main([*argv, "--store", str(tmp_path / "b")]) == 130
    assert "evaluation network" in capsys.readouterr().err
    (folder,) = [p for p in (tmp_path / "b").glob("evaluation-*") if p.is_dir()]
    assert (folder / "checkpoint.pt").is_file()
    again: list = []
    _interrupt_at(monkeypatch, None, again)
    assert main([*argv, "--store", str(tmp_path / "b")]) == 0
    assert again == straight[2:]  # only the unfinished network is trained
    rows = [RunStore(tmp_path / s).runs("evaluation")[0].metrics["rows"] for s in "ab"]
    assert [(r["net"], r["accuracy"], r["train_accuracy"]) for r in rows[0]] == \
        [(r["net"], r["accuracy"], r["train_accuracy"]) for r in rows[1]]
    assert not (folder / "checkpoint.pt").exists()


def test_an_interrupted_ensemble_keeps_its_finished_groups(digits, monkeypatch):
    images, labels = digits.train_images[:20], digits.train_labels[:20]
    protocol = protocol_for("DC", epochs=2)
    args = (images, labels, digits, ["MLP"], 4, protocol, ("resume",))
    kwargs = {"progress": False, "ensemble": True, "ensemble_size": 2}
    straight = evaluate.evaluate_images(*args, **kwargs)
    saved: list = []
    groups = evaluate.train_and_test_ensemble

    def second_fails(*a, **k):
        if saved:
            raise KeyboardInterrupt
        return groups(*a, **k)

    monkeypatch.setattr(evaluate, "train_and_test_ensemble", second_fails)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_images(*args, **kwargs, on_rows=lambda rows: saved.append(rows))
    assert [r["net"] for r in saved[-1]] == [0, 1]
    trained: list = []
    monkeypatch.setattr(evaluate, "train_and_test_ensemble",
                        lambda *a, **k: trained.append(a[7]) or groups(*a, **k))
    resumed = evaluate.evaluate_images(*args, **kwargs, finished=saved[-1])
    assert len(trained) == 1 and [p[-1] for p in trained[0]] == [2, 3]
    assert [(r["net"], r["accuracy"]) for r in resumed] == [(r["net"], r["accuracy"]) for r in straight]


# --------------------------------------------------------------------------- legacy MTT sets

@pytest.fixture
def legacy_mtt(tmp_path):
    """A store holding an MTT distillation made legacy: no checksums, no learned_lr."""
    pool_root = tmp_path / "pools"
    train_pool("Digits", ["ConvNetW32"], 1, dataclasses.replace(MTT_EXPERT_RECIPE, epochs=3),
               root=pool_root, device="cpu", progress=False, recipe_name="mtt")
    spec = make_spec("Digits", "MTT", 1, iterations=2, model="ConvNetW32", syn_steps=3,
                     expert_epochs=1, max_start_epoch=2, lr_img=10.0, n_experts=1)
    run = distill_run(spec, Workspace(tmp_path / "store", pool_root=pool_root, progress=False,
                                      device="cpu"))
    tensors = run.tensors()
    assert "learned_lr" in tensors
    torch.save({k: v for k, v in tensors.items() if k != "learned_lr"}, run.path / "tensors.pt")
    metrics = json.loads((run.path / "metrics.json").read_text())
    metrics.pop(FILES_KEY)
    (run.path / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path / "store", pool_root, run.id


@pytest.mark.parametrize("action", ["seal", "evaluate", "evaluate-recompute"])
def test_a_legacy_mtt_set_without_its_learned_lr(action, legacy_mtt, capsys):
    store, pool_root, run_id = legacy_mtt
    before = files(store)
    capsys.readouterr()
    if action == "seal":
        assert main(["runs", "check", "--seal", "--store", str(store)]) == 1
        out = capsys.readouterr().out
        assert f"{run_id}  failed: cannot seal {run_id}" in out and "'learned_lr'" in out
        assert f"ptmdd evaluate {run_id} --recompute" in out
        assert files(store) == before  # not sealed
        return
    argv = ["evaluate", run_id, "--store", str(store), "--pool-root", str(pool_root), *TINY]
    if action == "evaluate":
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "KeyError" not in err and "Traceback" not in err
        assert f"cannot evaluate the stored distillation {run_id}" in err and "'learned_lr'" in err
        assert not list(store.glob("evaluation-*"))
        return
    assert main([*argv, "--recompute"]) == 0
    assert "learned lr" in capsys.readouterr().out
    assert "learned_lr" in RunStore(store).load(run_id).tensors()
    assert RunStore(store).check_run(run_id).status == "verified"


# --------------------------------------------------------------------------- notebook kernels

def test_notebook_kernels_start_without_the_tcp_warning(tmp_path):
    """Two one-cell notebooks through the study's papermill call at once (real kernels, as
    ``make study`` runs them two at a time): no TCP warning, and each kernel talks to its own
    client (kernels sharing socket names fail with "Invalid Signature")."""
    script = (
        "import nbformat, concurrent.futures as cf\n"
        "from pathlib import Path\n"
        "from ptmdd_helpers.study.batch import execute_notebook\n"
        "for k in (1, 2):\n"
        "    cell = nbformat.v4.new_code_cell(f'import time; time.sleep(2); print(6 * 7 * {k})')\n"
        "    nb = nbformat.v4.new_notebook(cells=[cell])\n"
        "    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3',"
        " 'language': 'python'}\n"
        "    nbformat.write(nb, f'in{k}.ipynb')\n"
        "with cf.ThreadPoolExecutor(2) as pool:\n"
        "    list(pool.map(lambda k: execute_notebook(Path(f'in{k}.ipynb').resolve(),"
        " Path(f'out{k}.ipynb').resolve(), {}), (1, 2)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "without encryption" not in result.stderr and "Invalid Signature" not in result.stderr
    for k in (1, 2):
        out = json.loads((tmp_path / f"out{k}.ipynb").read_text())
        assert "".join(out["cells"][-1]["outputs"][0]["text"]) == f"{42 * k}\n"
