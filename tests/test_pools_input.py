"""Bad input to pools is refused before anything is written, with a message that names the fix;
non-finite weights are refused when a member is trained and when it is loaded."""

from __future__ import annotations

import math

import pytest
import torch

from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools.members import (
    PAPER_POOL_RECIPE,
    MemberSpec,
    MissingPoolError,
    PoolError,
    member_complete,
    pool_recipe,
    recipe_identity,
    validate_recipe,
)
from ptmdd_helpers.pools.pool import load_member, load_pool
from ptmdd_helpers.pools.pretrain import train_pool


def _pretrain(tmp_path, *extra: str) -> list[str]:
    return ["pretrain", "--source", "Digits", "--arch", "MLP", "--epochs", "1", "--pool-root",
            str(tmp_path), "--quiet", "--device", "cpu", *extra]


@pytest.mark.parametrize(("flags", "message"), [
    (["--num", "0"], "--num"),
    (["--epochs", "0"], "epochs (--epochs) must be a whole number >= 1, got 0"),
    (["--lr", "nan"], "lr (--lr) must be a finite number > 0, got nan"),
    (["--lr", "-1"], "lr (--lr) must be a finite number > 0"),
    (["--momentum", "-0.5"], "momentum (--momentum) must be a finite number >= 0"),
    (["--weight-decay", "inf"], "weight_decay (--weight-decay) must be a finite number >= 0"),
    (["--batch-size", "0"], "batch_size (--batch-size) must be a whole number >= 1"),
    (["--milestones", "100,50"], "milestones (--milestones) must be strictly increasing"),
    (["--milestones", "0"], "milestones (--milestones) must be strictly increasing epochs >= 1"),
])
def test_pretrain_refuses_bad_values_with_exit_2_and_writes_nothing(tmp_path, capsys, flags,
                                                                   message):
    assert main(_pretrain(tmp_path, *flags)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_train_pool_refuses_bad_recipes_and_counts(tmp_path):
    with pytest.raises(ValueError, match="num_models must be a whole number >= 1"):
        train_pool("Digits", ["MLP"], 0, TrainRecipe(epochs=1), root=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"epochs \(--epochs\) must be"):
        train_pool("Digits", ["MLP"], 1, TrainRecipe(epochs=0), root=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"lr \(--lr\) must be a finite number > 0, got nan"):
        train_pool("Digits", ["MLP"], 1, TrainRecipe(epochs=1, lr=math.nan), root=tmp_path,
                   progress=False)
    with pytest.raises(ValueError, match="list or tuple of architecture names"):
        train_pool("Digits", "MLP", 1, TrainRecipe(epochs=1), root=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_valid_recipes_keep_their_identity():
    # the identity of the real pools trained before validation existed (cpustore, paper recipe)
    assert recipe_identity(validate_recipe(PAPER_POOL_RECIPE)) == "5cb0d13938762836"
    made = pool_recipe(epochs=6, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256,
                       milestones=[50, 100])  # milestones are absolute: beyond --epochs is fine
    assert made == TrainRecipe(6, 0.01, 0.9, 0.005, 256, (50, 100))
    assert recipe_identity(made) == "5cb0d13938762836"


def test_a_member_that_diverges_is_refused_and_not_complete(tmp_path):
    recipe = TrainRecipe(epochs=2, lr=1e6)
    with pytest.raises(PoolError, match=r"Digits/ConvNetW32/seed0 diverged in epoch 1.*lower --lr"):
        train_pool("Digits", ["ConvNetW32"], 1, recipe, root=tmp_path, progress=False)
    member = MemberSpec("Digits", "ConvNetW32", 0, recipe)
    assert not member_complete(member, tmp_path)
    directory = member.directory(tmp_path)
    assert not list(directory.glob("epoch_*.pt")) and not (directory / "log.json").exists()


def test_a_stored_checkpoint_with_nan_weights_is_refused_when_loaded(tmp_path):
    train_pool("Digits", ["MLP"], 1, TrainRecipe(epochs=1), root=tmp_path, progress=False)
    path = MemberSpec("Digits", "MLP", 0).directory(tmp_path) / "epoch_1.pt"
    checkpoint = torch.load(path, weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name][0] = math.nan
    torch.save(checkpoint, path)
    for load in (lambda: load_member("Digits", "MLP", 0, 1, root=tmp_path),
                 lambda: load_pool("Digits", ["MLP"], 1, 1, root=tmp_path)):
        with pytest.raises(PoolError, match=f"refused to load {path}.*{name}.*Delete .*seed0"):
            load()


def test_load_pool_refuses_empty_pools_and_a_string_of_archs(tmp_path):
    with pytest.raises(ValueError, match="n_models must be a whole number >= 1"):
        load_pool("Digits", ["MLP"], 0, 1, root=tmp_path)
    with pytest.raises(ValueError, match=r"list or tuple of architecture names, e\.g\. \['MLP'\]"):
        load_pool("Digits", "MLP", 1, 1, root=tmp_path)


def test_load_pool_refuses_a_checkpoint_the_log_does_not_record(tmp_path):
    train_pool("Digits", ["MLP"], 1, TrainRecipe(epochs=1), root=tmp_path, progress=False)
    directory = MemberSpec("Digits", "MLP", 0).directory(tmp_path)
    (directory / "epoch_2.pt").write_bytes((directory / "epoch_1.pt").read_bytes())
    with pytest.raises(MissingPoolError, match="missing epoch 2 of MLP/seed0"):
        load_pool("Digits", ["MLP"], 1, 2, root=tmp_path)
