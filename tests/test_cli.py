"""The ptmdd command line: listings, pretrain, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.networks.models import list_models


def test_models_lists_the_registry_one_per_line():
    # test_models.py checks that the registry holds exactly the study's names
    out = subprocess.run([sys.executable, "-m", "ptmdd_helpers.cli.commands", "models"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == list_models() and "ResNet18BN_AP" in out


def test_pretrain_twice_trains_once(tmp_path, capsys):
    args = ["pretrain", "--source", "Digits", "--arch", "ConvNetW32", "--num", "2", "--epochs",
            "1", "--pool-root", str(tmp_path), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    first = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("epoch_*.pt"))
    assert len(first) == 2
    assert main(args) == 0
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("epoch_*.pt")) == first
    assert "seed1: 1 epochs" in capsys.readouterr().out


def test_bad_input_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ptmdd_helpers.cli.commands", "pretrain", "--source", "NoSuchSet",
         "--arch", "ConvNet", "--pool-root", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "unknown dataset 'NoSuchSet'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_evaluate_in_bf16_is_its_own_stored_run(tmp_path, capsys):
    args = ["evaluate", "--random-real", "Digits", "2", "--eval-nets", "1", "--eval-epochs", "3",
            "--store", str(tmp_path), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    assert main([*args, "--eval-precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "augment none): " in out and "augment none, bf16): " in out
    specs = [json.loads(p.read_text()) for p in tmp_path.glob("evaluation-*/spec.json")]
    assert sorted(s["protocol"].get("precision", "fp32") for s in specs) == ["bf16", "fp32"]


def test_a_bad_option_leaves_no_orphan_run_directory(tmp_path):
    # the whole table of bad options is in test_bad_input.py; this one runs the real process
    result = subprocess.run(
        [sys.executable, "-m", "ptmdd_helpers.cli.commands", "distill", "--dataset", "Digits", "--method",
         "DC", "--ipc", "1", "--iterations", "2", "--checkpoint-every", "0", "--no-eval",
         "--store", str(tmp_path / "store"), "--pool-root", str(tmp_path / "pools"), "--quiet"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "--checkpoint-every must be an integer ≥ 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())
