"""Bad input gets one clear paragraph naming the fix, exit status 2, no traceback, nothing written.

The same holds for the Python API: a ``ValueError`` naming the argument, its value and what is
expected, raised before the store (or the pool root) creates any folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.distill import DistillSpec, make_spec, protocol_for
from ptmdd_helpers.evaluation.protocol import EvalProtocol
from ptmdd_helpers.networks.training import resolve_device
from ptmdd_helpers.pools.guidance import GuidanceSpec, parse_alphas
from ptmdd_helpers.store.evaluations import evaluation_run
from ptmdd_helpers.store.runs import EvaluationSpec, RealSubsetSpec, Workspace, distill_run
from ptmdd_helpers.store.runstore import RunStore


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def _roots(tmp_path: Path) -> list[str]:
    return ["--store", str(tmp_path / "store"), "--pool-root", str(tmp_path / "pools"),
            "--data-root", str(tmp_path / "data"), "--quiet"]


DISTILL = ["distill", "--dataset", "Digits", "--method", "DC", "--ipc", "1", "--iterations", "2",
           "--model", "ConvNetW32", "--no-eval"]

# (extra arguments, a substring of the message that names the fix)
DISTILL_CASES = [
    (["--device", "foo"], "must be auto, cpu, cuda, cuda:N"),
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be an integer ≥ 1, got 0"),
    (["--clom", "--alphas", "abc"], "--alphas expects a number or comma-separated numbers, one "
                                    "per pool architecture"),
    (["--clom", "--alphas", "1,nan"], "--alphas expects a number"),
    (["--clom", "--alphas", ","], "--alphas expects a number"),
    (["--clom", "--pool-epoch", "-1"], "give 0 (the untrained initializations) or a positive"),
    (["--clom", "--pool-size", "0"], "--pool-size must be an integer ≥ 1"),
    (["--cclom", "--cclom-real-batch", "0"], "--cclom-real-batch must be an integer ≥ 1"),
    (["--cclom", "--cclom-batch", "0"], "--cclom-real-batch must be an integer ≥ 1"),  # old name
    (["--clom", "--pool", "NoSuchNet"], "--pool: unknown model(s) 'NoSuchNet'"),
    (["--clom", "--pool", ","], "--pool needs at least one architecture"),
    (["--clom", "--source", "Nope"], "unknown dataset 'Nope'"),
    (["--ptm-only"], "--ptm-only needs --clom or --cclom"),
    (["--eval-nets", "0"], "--eval-nets must be an integer ≥ 1, got 0"),
    (["--eval-epochs", "0"], "--eval-epochs must be an integer ≥ 1, got 0"),
    (["--eval-archs", "NoSuchNet"], "--eval-archs: unknown model(s) 'NoSuchNet'"),
    (["--ipc", "0"], "--ipc must be an integer ≥ 1, got 0"),
    (["--ipc", "100000"], "choose the IPC (--ipc) in that range"),
    (["--iterations", "0"], "--iterations must be an integer ≥ 1, got 0"),
    (["--seed", "-1"], "--seed must be an integer ≥ 0, got -1"),
    (["--batch-real", "0"], "--batch-real must be an integer ≥ 1"),
    (["--outer-loop", "0"], "--outer-loop must be an integer ≥ 1"),
    (["--inner-loop", "-2"], "--inner-loop must be an integer ≥ 1"),
    (["--lr-img", "-1"], "--lr-img must be a finite number > 0, got -1.0"),
    (["--lr-net", "nan"], "--lr-net must be a finite number > 0"),
    (["--model", "NoSuchNet"], "--model: unknown model(s) 'NoSuchNet'"),
    (["--method", "KIP"], "unknown method 'KIP'; valid: DC, DSA, DM"),
    (["--dataset", "Nope"], "unknown dataset 'Nope'"),
]

EVALUATE = ["evaluate", "--eval-epochs", "1", "--eval-nets", "1"]
EVALUATE_CASES = [
    (["--random-real", "Digits", "x"], "--random-real expects DATASET IPC with IPC a whole number"),
    (["--random-real", "Digits", "0"], "--random-real expects DATASET IPC"),
    (["--random-real", "Nope", "1"], "unknown dataset 'Nope'"),
    (["--random-real", "Digits", "1", "--eval-nets", "0"], "--eval-nets must be an integer ≥ 1"),
    (["--random-real", "Digits", "1", "--eval-epochs", "-3"], "--eval-epochs must be an integer"),
    (["--random-real", "Digits", "1", "--device", "foo"], "unknown device 'foo'"),
    (["--random-real", "Digits", "1", "--seed", "-1"], "--seed must be an integer ≥ 0"),
    (["--whole", "Digits", "--eval-archs", "ConvNetW32,NoSuchNet"], "unknown model(s) 'NoSuchNet'"),
    ([], "give a run id or path"),
]


@pytest.mark.parametrize(
    ("argv", "message"),
    [(DISTILL + extra, message) for extra, message in DISTILL_CASES]
    + [(EVALUATE + extra, message) for extra, message in EVALUATE_CASES],
    ids=[" ".join(extra) or "nothing" for extra, _ in DISTILL_CASES + EVALUATE_CASES],
)
def test_bad_options_exit_2_with_the_fix_and_write_nothing(tmp_path, capsys, argv, message):
    assert main([*argv, *_roots(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.startswith(f"ptmdd {argv[0]}: error: ")
    assert captured.err.count("\n") == 1  # one paragraph
    assert "Traceback" not in captured.err and captured.out == ""
    assert _files(tmp_path) == []


# ----------------------------------------------------------------------------- the Python API

@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"ipc": 1.5}, "ipc (images per class) must be an integer, got 1.5 (float)"),
     ({"ipc": True}, "ipc (images per class) must be an integer, got True (bool)"),
     ({"iterations": 3.5}, "iterations must be an integer ≥ 0, got 3.5 (float)"),
     ({"iterations": "3"}, "iterations must be an integer ≥ 0, got '3' (str)"),
     ({"lr_img": -1}, "lr_img (a learning rate) must be a finite number > 0, got -1"),
     ({"lr_net": float("inf")}, "lr_net (a learning rate) must be a finite number > 0"),
     ({"batch_real": 0}, "batch_real must be an integer ≥ 1, got 0"),
     ({"seed": -1}, "seed (the replicate index) must be an integer ≥ 0, got -1"),
     ({"augment": "yes"}, "augment must be True or False"),
     ({"guidance": "clom"}, "guidance must be a GuidanceSpec or None"),
     ({"epochs": 3}, "make_spec: unknown argument(s) epochs")],
)
def test_make_spec_names_the_argument_and_distill_run_writes_nothing(tmp_path, overrides,
                                                                      message):
    ipc = overrides.pop("ipc", 1)
    with pytest.raises(ValueError, match="make_spec: ") as info:
        make_spec("Digits", "DC", ipc, **overrides)
    assert message in str(info.value)
    # a spec built without make_spec is refused by distill_run before the store makes a folder
    if set(overrides) <= {f.name for f in dataclasses.fields(DistillSpec)}:
        bad = DistillSpec("Digits", "DC", ipc, **{"model": "ConvNetW32", "iterations": 1,
                                                 **overrides})
        with pytest.raises(ValueError, match="distill_run: "):
            distill_run(bad, Workspace(tmp_path / "store", progress=False, device="cpu"))
    assert _files(tmp_path) == []


def test_ipc_out_of_range_is_refused_before_the_store(tmp_path):
    spec = make_spec("Digits", "DC", 100000, iterations=1, model="ConvNetW32")
    with pytest.raises(ValueError, match=r"IPC must be between 1 .* choose the IPC \(--ipc\)"):
        distill_run(spec, Workspace(tmp_path / "store", progress=False, device="cpu"))
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"archs": "ConvNet"}, "must be a list or tuple of architecture names, e.g. ('ConvNet',)"),
     ({"archs": ()}, "must hold at least one of the architecture names"),
     ({"n_models": 0}, "n_models (members per architecture, --pool-size) must be an integer ≥ 1"),
     ({"epoch": -1}, "give 0 (the untrained initializations) or a positive epoch"),
     ({"epoch": 1.5}, "epoch (the PTM checkpoint, --pool-epoch) must be an integer ≥ 0"),
     ({"alphas": (float("nan"),)}, "alphas must be a tuple of finite numbers"),
     ({"alphas": 100.0}, "alphas must be a tuple of finite numbers"),
     ({"alphas": ()}, "alphas must be a tuple of finite numbers"),
     ({"kind": "clomm"}, "kind must be one of clom, cclom"),
     ({"real_batch": 0}, "real_batch"),
     ({"ptm_only": 1}, "ptm_only must be True or False")],
)
def test_guidance_spec_refuses_bad_fields(changes, message):
    settings = {"kind": "clom", "source": "Digits", "archs": ("ConvNetW32",), "epoch": 1}
    with pytest.raises(ValueError) as info:
        GuidanceSpec(**{**settings, **changes})
    assert message in str(info.value)


def test_parse_alphas():
    assert parse_alphas("5000, 5000,100") == (5000.0, 5000.0, 100.0)
    assert parse_alphas([1, 2.5]) == (1.0, 2.5)
    for bad in ("abc", "", "1,inf", 100, [True]):
        with pytest.raises(ValueError, match="expects a number or comma-separated numbers"):
            parse_alphas(bad)


def test_workspace_takes_a_folder_and_refuses_the_rest(tmp_path):
    workspace = Workspace(str(tmp_path / "store"))
    assert isinstance(workspace.store, RunStore) and workspace.store.root == tmp_path / "store"
    assert isinstance(Workspace(tmp_path / "store").store, RunStore)
    for kwargs, message in [({"store": 42}, "store must be a RunStore or a folder"),
                            ({"checkpoint_every": 0}, "--checkpoint-every"),
                            ({"device": "foo"}, "unknown device 'foo'"),
                            ({"data_root": 3}, "data_root must be a folder"),
                            ({"progress": "no"}, "progress must be True or False")]:
        with pytest.raises(ValueError, match=message):
            Workspace(**{"store": tmp_path / "store", **kwargs})
    assert _files(tmp_path) == []


def test_evaluation_specs_refuse_bad_fields(tmp_path):
    subject = RealSubsetSpec("Digits", 1)
    with pytest.raises(ValueError, match=r"n_nets \(evaluation networks, --eval-nets\)"):
        EvaluationSpec(subject, "ConvNetW32", 0, protocol_for("DC"))
    with pytest.raises(ValueError, match="protocol must be an EvalProtocol"):
        EvaluationSpec(subject, "ConvNetW32", 1, "DC")
    with pytest.raises(ValueError, match="RealSubsetSpec ipc"):
        RealSubsetSpec("Digits", 0)
    for kwargs, message in [({"epochs": 0}, r"EvalProtocol epochs \(--eval-epochs\)"),
                            ({"epochs": 2.5}, "EvalProtocol epochs"),
                            ({"augment": "zca"}, "unknown augment 'zca'"),
                            ({"precision": "fp16"}, "unknown precision 'fp16'"),
                            ({"lr": 0}, "EvalProtocol lr"),
                            ({"weight_decay": -1}, "EvalProtocol weight_decay")]:
        with pytest.raises(ValueError, match=message):
            EvalProtocol(**kwargs)
    spec = EvaluationSpec(subject, "NoSuchNet", 1, protocol_for("DC", epochs=1))
    with pytest.raises(ValueError, match="unknown model 'NoSuchNet'"):
        evaluation_run(spec, Workspace(tmp_path / "store", device="cpu", progress=False))
    assert _files(tmp_path) == []


def test_resolve_device_names_the_valid_devices():
    assert str(resolve_device("cpu")) == "cpu"
    for bad in ("foo", "cuda:", "cuda:x", "gpu", 0):
        with pytest.raises(ValueError, match=r"must be auto, cpu, cuda, cuda:N .* or mps"):
            resolve_device(bad)
