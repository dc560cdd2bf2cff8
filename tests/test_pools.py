"""PTM pools on the offline Digits set: checkpoints, logs, resume, safe loading, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools import pretrain
from ptmdd_helpers.pools.members import MemberSpec, MissingPoolError, PoolError
from ptmdd_helpers.pools.pool import load_member, load_pool
from ptmdd_helpers.pools.pretrain import train_pool, write_initial_checkpoint

RECIPE = TrainRecipe(epochs=2, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256,
                     milestones=(50, 100))


def _weights(root, arch="ConvNet", seed=0, epoch=2):
    return load_member("Digits", arch, seed, epoch, root=root).state_dict()


def test_pool_writes_a_checkpoint_per_epoch_and_a_log(tmp_path):
    logs = train_pool("Digits", ["ConvNet"], 1, RECIPE, root=tmp_path, progress=False)
    member = tmp_path / "Digits" / "ConvNet" / "seed0"
    assert sorted(p.name for p in member.glob("epoch_*.pt")) == ["epoch_1.pt", "epoch_2.pt"]
    log = json.loads((member / "log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert all(0.0 <= e["test_acc"] <= 1.0 and e["seconds"] > 0 for e in log["epochs"])
    # two epochs of the paper's recipe on Digits already classify far above chance (10 %)
    assert logs[("ConvNet", 0)].epochs[-1]["test_acc"] > 0.5


def test_complete_members_are_skipped(tmp_path, monkeypatch):
    train_pool("Digits", ["ConvNet"], 1, RECIPE, root=tmp_path, progress=False)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a complete member was trained again")

    monkeypatch.setattr(pretrain, "train_epoch", must_not_train)
    logs = train_pool("Digits", ["ConvNet"], 1, RECIPE, root=tmp_path, progress=False)
    assert logs[("ConvNet", 0)].completed == 2


def test_initial_checkpoint_is_the_untrained_start_of_training(tmp_path):
    member = MemberSpec("Digits", "ConvNetW32", 0)
    path = write_initial_checkpoint(member, tmp_path)
    assert path.name == "epoch_0.pt" and not (path.parent / "log.json").exists()
    untrained = load_member("Digits", "ConvNetW32", 0, 0, root=tmp_path)
    # epoch 0 is the network seed 0 starts training from; epoch 1 has moved away from it
    first = TrainRecipe(epochs=1, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256,
                        milestones=(50, 100))
    train_pool("Digits", ["ConvNetW32"], 1, first, root=tmp_path, progress=False)
    trained = load_member("Digits", "ConvNetW32", 0, 1, root=tmp_path)
    fresh = pretrain.build_member_model("ConvNetW32", "Digits", 0)
    for name, value in untrained.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[name]), name
    assert any(not torch.equal(v, trained.state_dict()[k]) for k, v in untrained.state_dict().items())
    assert write_initial_checkpoint(member, tmp_path).stat().st_mtime_ns == path.stat().st_mtime_ns


def test_seeds_give_different_members(tmp_path):
    train_pool("Digits", ["ConvNetW32"], 2, RECIPE, root=tmp_path, progress=False)
    a, b = (_weights(tmp_path, "ConvNetW32", s) for s in (0, 1))
    assert not torch.equal(next(iter(a.values())), next(iter(b.values())))


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    recipe = TrainRecipe(epochs=3, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256,
                         milestones=(2,))
    train_pool("Digits", ["ConvNetW32"], 1, recipe, root=tmp_path / "straight", progress=False)

    calls = {"n": 0}
    real_train_epoch = pretrain.train_epoch

    def killed_during_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(pretrain, "train_epoch", killed_during_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_pool("Digits", ["ConvNetW32"], 1, recipe, root=tmp_path / "killed", progress=False)
    member = tmp_path / "killed" / "Digits" / "ConvNetW32" / "seed0"
    assert not (member / "epoch_3.pt").exists()
    monkeypatch.setattr(pretrain, "train_epoch", real_train_epoch)
    log = train_pool("Digits", ["ConvNetW32"], 1, recipe, root=tmp_path / "killed",
                     progress=False)[("ConvNetW32", 0)]
    assert [e["epoch"] for e in log.epochs] == [1, 2, 3]
    straight = _weights(tmp_path / "straight", "ConvNetW32", epoch=3)
    resumed = _weights(tmp_path / "killed", "ConvNetW32", epoch=3)
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_keep_epochs_keeps_the_chosen_set_and_the_last(tmp_path):
    recipe = TrainRecipe(epochs=3, batch_size=256, weight_decay=0.005, milestones=(50, 100))
    train_pool("Digits", ["ConvNetW32"], 1, recipe, keep_epochs=[1], root=tmp_path,
               progress=False)
    member = tmp_path / "Digits" / "ConvNetW32" / "seed0"
    assert sorted(p.name for p in member.glob("epoch_*.pt")) == ["epoch_1.pt", "epoch_3.pt"]


def test_load_pool_returns_frozen_eval_models(tmp_path):
    train_pool("Digits", ["ConvNetW32", "MLP"], 2, RECIPE, root=tmp_path, progress=False)
    pool = load_pool("Digits", ["ConvNetW32", "MLP"], 2, epoch=2, root=tmp_path)
    assert list(pool) == ["ConvNetW32", "MLP"] and all(len(v) == 2 for v in pool.values())
    for members in pool.values():
        for model in members:
            assert not model.training
            assert not any(p.requires_grad for p in model.parameters())


def test_missing_pool_error_prints_the_command(tmp_path):
    with pytest.raises(MissingPoolError) as info:
        load_pool("Digits", ["ConvNet", "AlexNet"], 3, epoch=7, root=tmp_path)
    assert (f"ptmdd pretrain --source Digits --arch ConvNet,AlexNet --num 3 --epochs 7 "
            f"--pool-root {tmp_path}") in str(info.value)


class Payload:
    """Anything that is not a tensor or plain container needs full pickle to load."""

    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_pickle_payload_checkpoint_is_refused(tmp_path, capsys):
    member = MemberSpec("Digits", "ConvNet", 0).directory(tmp_path)
    member.mkdir(parents=True)
    model = pretrain.build_member_model("ConvNet", "Digits", 0)
    torch.save({"state_dict": model.state_dict(), "meta": Payload()}, member / "epoch_1.pt")
    with pytest.raises(PoolError, match="pickle payload"):
        load_member("Digits", "ConvNet", 0, 1, root=tmp_path)
    assert "this ran" not in capsys.readouterr().out


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    member = MemberSpec("Digits", "ConvNet", 0).directory(tmp_path)
    member.mkdir(parents=True)
    other = pretrain.build_member_model("ConvNetW32", "Digits", 0)
    torch.save({"state_dict": other.state_dict(), "meta": {}}, member / "epoch_1.pt")
    with pytest.raises(PoolError, match="does not fit architecture ConvNet"):
        load_member("Digits", "ConvNet", 0, 1, root=tmp_path)


def test_a_different_recipe_in_the_same_folder_is_refused(tmp_path):
    train_pool("Digits", ["ConvNetW32"], 1, TrainRecipe(epochs=1), root=tmp_path, progress=False)
    with pytest.raises(PoolError, match="different recipe"):
        train_pool("Digits", ["ConvNetW32"], 1, TrainRecipe(epochs=2, lr=0.1), root=tmp_path,
                   progress=False)
