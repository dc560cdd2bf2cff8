"""One identity per pool member (recipe included) in folders, logs, task keys and dependencies,
and the failures a new user met with MTT's experts and the guidance options (each a clean error
or the right behaviour)."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from ptmdd_helpers import study
from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.pools.members import MemberSpec
from ptmdd_helpers.pools.pool import member_log
from ptmdd_helpers.store.runstore import RunStore
from ptmdd_helpers.study.tasks import Task, dependencies

PROFILE = {
    "shared": {
        "target": "Digits", "device": "cpu", "executor": "local", "workers": 1,
        "seeds": [0], "ipcs": [1], "alpha": {"MTT": 1},
        "distill": {"model": "ConvNetW32", "batch_real": 16,
                    "MTT": {"iterations": 2, "n_experts": 1, "syn_steps": 2, "expert_epochs": 1,
                            "max_start_epoch": 1, "lr_img": 10}},
        "experts": {"recipe": {"epochs": 1}},
        "pool": {"arch": "ConvNetW32", "n_models": 1, "epoch": "final", "recipe": {"epochs": 1}},
        "eval": {"n_nets": 1, "epochs": 2},
    },
    "00_preliminary": {"methods": ["MTT"], "references": {"random_real": False}},
}


@pytest.fixture
def mtt_profile(tmp_path):
    """A profile whose 00 distils MTT with and without CLoM (a paper PTM and an MTT expert of
    the same source, architecture and seed), and its roots under ``tmp_path``."""
    path = tmp_path / "mtt.yaml"
    path.write_text(yaml.safe_dump(PROFILE))
    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}",
             f"figures_dir={tmp_path / 'figures'}", f"runs_dir={tmp_path / 'runs'}"]
    return path, roots


def test_a_paper_member_and_an_expert_have_distinct_keys_and_distillations_wait_for_experts(
        mtt_profile):
    path, roots = mtt_profile
    grid = study.build_grid("00_preliminary", study.load_profile(path, roots)["00_preliminary"])
    keys = [Task("member", m).key for m in grid.members]
    assert sorted(keys) == ["member:Digits/ConvNetW32/mtt/seed0", "member:Digits/ConvNetW32/seed0"]
    baseline, guided = grid.distillations
    assert dependencies(Task("distill", baseline)) == ["member:Digits/ConvNetW32/mtt/seed0"]
    assert sorted(dependencies(Task("distill", guided))) == sorted(keys)


def _progress(out: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"\[(\d+)/(\d+)\]", out)]


def test_a_study_rerun_after_deleting_an_expert_and_its_distillations_completes(
        mtt_profile, tmp_path, capsys):
    path, roots = mtt_profile
    first = study.run_study(path, only="00", overrides=roots, workers=2, notebooks=False,
                            verbose=True)
    out = capsys.readouterr().out
    steps = _progress(out)
    total = steps[0][1]
    assert total == 2 + 2 + 2  # paper member + expert, 2 distillations, 2 evaluations
    assert sorted(k for k, _ in steps) == list(range(1, total + 1))  # each count once, in full
    assert "0 already stored" in first["counts"]
    expert = MemberSpec("Digits", "ConvNetW32", 0, recipe_name="mtt")
    assert member_log(expert, tmp_path / "pools").recipe["recipe"]["momentum"] == 0.0  # its own log
    shutil.rmtree(expert.directory(tmp_path / "pools"))
    store = RunStore(tmp_path / "store")
    for run in store.runs():
        shutil.rmtree(run.path)
    again = study.run_study(path, only="00", overrides=roots, workers=2, notebooks=False,
                            verbose=True)
    steps = _progress(capsys.readouterr().out)
    assert sorted(k for k, _ in steps) == list(range(1, 6)) and {n for _, n in steps} == {5}
    assert set(again["results"].values()) <= {("computed", "")}
    assert "1 already stored" in again["counts"]  # the paper member
    assert len(store.runs()) == 4


# --------------------------------------------------------------------------- new-user failures

def _pretrain_experts(pools, *extra):
    assert main(["pretrain", "--source", "Digits", "--arch", "ConvNetW32", "--num", "1",
                 "--recipe", "mtt", "--pool-root", str(pools), "--quiet", "--device", "cpu",
                 *extra]) == 0


MTT_ARGS = ["distill", "--dataset", "Digits", "--method", "MTT", "--ipc", "1", "--model",
            "ConvNetW32", "--iterations", "2", "--syn-steps", "2", "--expert-epochs", "1",
            "--max-start-epoch", "2", "--eval-nets", "1", "--eval-epochs", "1", "--quiet",
            "--device", "cpu"]


@pytest.mark.parametrize(
    ("pretrain", "extra", "code", "message"),
    [  # experts of another lr are used (the run id names them as trained), not refused
     (["--epochs", "2", "--lr", "0.02"], [], 0, "distillation distill-"),
     # experts that kept only some epochs are refused before anything is written
     (["--epochs", "2", "--keep-epochs", "2"], [], 2, "lacks the checkpoints of epoch(s) 1"),
     # a student batch larger than the synthetic set
     (["--epochs", "2"], ["--batch-syn", "1000"], 2, "the synthetic set has 10 images"),
     # CCLoM's real batch with CLoM, or without guidance
     (["--epochs", "2"], ["--clom", "--cclom-real-batch", "64"], 2, "was given for clom, which "
                                                                    "uses none"),
     (["--epochs", "2"], ["--cclom-real-batch", "64"], 2, "it needs --cclom")],
    ids=["experts-lr", "experts-keep-epochs", "batch-syn", "clom-real-batch", "real-batch-alone"])
def test_mtt_and_guidance_options_as_a_new_user_met_them(tmp_path, capsys, pretrain, extra, code,
                                                         message):
    _pretrain_experts(tmp_path / "pools", *pretrain)
    capsys.readouterr()
    argv = [*MTT_ARGS, *extra, "--pool-root", str(tmp_path / "pools"),
            "--store", str(tmp_path / "store")]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message in (captured.out if code == 0 else captured.err)
    if code:
        assert "Traceback" not in captured.err and captured.err.count("\n") == 1
        assert not (tmp_path / "store").exists() or not list(RunStore(tmp_path / "store").runs())
