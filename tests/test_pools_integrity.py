"""Pool members stay consistent: a crash at any write resumes to the uninterrupted member, and a
member is complete only when its log, resume.pt and checkpoints agree."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools import pretrain
from ptmdd_helpers.pools.members import MemberSpec, PoolError, check_member, member_complete
from ptmdd_helpers.pools.pretrain import train_member, train_pool

ARCH = "ConvNetW32"
# 3 epochs with a milestone (scheduler state matters) and epoch 2 not kept (a skipped checkpoint)
RECIPE = TrainRecipe(epochs=3, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256,
                     milestones=(2,))
KEEP = (1,)
MEMBER = MemberSpec("Digits", ARCH, 0, RECIPE, KEEP)


class Crash(BaseException):
    """The process dies here (a BaseException, so that no ``except Exception`` swallows it)."""


class Writes:
    """Stand-ins for the atomic writers pools uses: record each write, crash before the k-th."""

    def __init__(self, monkeypatch, crash_at: int | None = None) -> None:
        self.names: list[str] = []
        self.crash_at = crash_at
        real_text, real_save = pretrain.atomic_write_text, pretrain.atomic_torch_save

        def write_text(path, text):
            self._before(path)
            real_text(path, text)

        def torch_save(obj, path):
            self._before(path)
            real_save(obj, path)

        monkeypatch.setattr(pretrain, "atomic_write_text", write_text)
        monkeypatch.setattr(pretrain, "atomic_torch_save", torch_save)

    def _before(self, path) -> None:
        if self.crash_at is not None and len(self.names) + 1 == self.crash_at:
            raise Crash(f"crash before write {self.crash_at} ({path.name})")
        self.names.append(path.name)


def _count_epochs(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = pretrain.train_epoch

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain, "train_epoch", counted)
    return calls


def _train(root):
    return train_pool("Digits", [ARCH], 1, RECIPE, keep_epochs=KEEP, root=root, progress=False)


def _snapshot(root) -> dict:
    """Everything an uninterrupted run decides: files, kept weights, resume state, log numbers."""
    directory = MEMBER.directory(root)
    resume = torch.load(directory / "resume.pt", weights_only=True)
    log = json.loads((directory / "log.json").read_text())
    return {
        "files": sorted(p.name for p in directory.iterdir()),
        "checkpoints": {p.name: torch.load(p, weights_only=True)["state_dict"]
                        for p in sorted(directory.glob("epoch_*.pt"))},
        "resume": {k: resume[k] for k in ("model", "optimizer", "scheduler", "epoch")},
        "log": [{k: v for k, v in e.items() if k != "seconds"} for e in log["epochs"]],
    }


def _same(a, b) -> bool:
    """Bitwise equality of nested tensors, containers and numbers."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted member: its snapshot and the names of its writes, in order."""
    root = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as monkeypatch:
        writes = Writes(monkeypatch)
        _train(root)
    return root, _snapshot(root), writes.names


def test_the_write_order_is_checkpoint_then_resume_then_log(straight):
    _, expected, names = straight
    assert names == ["recipe.json", "epoch_1.pt", "resume.pt", "log.json", "resume.pt", "log.json",
                     "epoch_3.pt", "resume.pt", "log.json"]
    assert expected["files"] == ["epoch_1.pt", "epoch_3.pt", "log.json", "recipe.json", "resume.pt"]
    assert [e["epoch"] for e in expected["log"]] == [1, 2, 3]


def test_a_crash_at_any_write_resumes_to_the_uninterrupted_member(straight, tmp_path):
    _, expected, names = straight
    for k in range(1, len(names) + 1):
        root = tmp_path / f"crash{k}"
        with pytest.MonkeyPatch.context() as monkeypatch:
            Writes(monkeypatch, crash_at=k)
            with pytest.raises(Crash):
                _train(root)
        assert not member_complete(MEMBER, root), k
        if names[k - 1] == "log.json":  # resume.pt is one epoch ahead: crash while reconciling too
            with pytest.MonkeyPatch.context() as monkeypatch:
                Writes(monkeypatch, crash_at=1)
                with pytest.raises(Crash):
                    _train(root)
        with pytest.MonkeyPatch.context() as monkeypatch:
            epochs = _count_epochs(monkeypatch)
            _train(root)
        saved_resumes = names[: k - 1].count("resume.pt")
        # no epoch trained twice into the record, none skipped: only unsaved epochs are retrained
        assert len(epochs) == RECIPE.epochs - saved_resumes, (k, names[k - 1])
        assert check_member(MEMBER, root) == [], k
        got = _snapshot(root)
        for part in expected:
            assert _same(got[part], expected[part]), (k, names[k - 1], part)


# ------------------------------------------------------------------------ completeness

@pytest.fixture
def member(straight, tmp_path):
    """A fresh copy of the uninterrupted member's pool root, to damage."""
    root = tmp_path / "copy"
    shutil.copytree(straight[0], root)
    return root, MEMBER.directory(root)


def _log(directory) -> dict:
    return json.loads((directory / "log.json").read_text())


def _write_log(directory, log: dict) -> None:
    (directory / "log.json").write_text(json.dumps(log))


def test_an_uninterrupted_member_is_complete(member):
    root, _ = member
    assert check_member(MEMBER, root) == [] and member_complete(MEMBER, root)
    # a shorter recipe is the first epochs of this member: complete too
    assert member_complete(MemberSpec("Digits", ARCH, 0, TrainRecipe(1, milestones=(2,),
                                                                      weight_decay=0.005)), root)


def test_a_missing_kept_checkpoint_makes_it_incomplete_and_is_refused(member):
    root, directory = member
    (directory / "epoch_1.pt").unlink()
    assert any("epoch_1.pt" in p for p in check_member(MEMBER, root))
    with pytest.raises(PoolError, match="epoch_1.pt.*Delete that folder"):
        train_member(MEMBER, root=root, progress=False)
    # keeping every epoch asks for epoch_2.pt, which this member never wrote
    every = MemberSpec("Digits", ARCH, 0, RECIPE)
    assert any("epoch_2.pt" in p for p in check_member(every, root))


def test_resume_pt_disagreeing_with_the_log_makes_it_incomplete(member):
    root, directory = member
    state = torch.load(directory / "resume.pt", weights_only=True)
    torch.save({**state, "epoch": 2}, directory / "resume.pt")
    assert any("resume.pt is at epoch 2" in p for p in check_member(MEMBER, root))
    assert not member_complete(MEMBER, root)
    (directory / "resume.pt").unlink()  # resume.pt is optional once the member is complete
    assert member_complete(MEMBER, root)


def test_a_short_log_or_a_log_of_another_recipe_is_incomplete(member):
    root, directory = member
    log = _log(directory)
    _write_log(directory, {**log, "recipe": {**log["recipe"], "seed": 5}})
    assert "different recipe" in check_member(MEMBER, root)[0]
    _write_log(directory, {**log, "epochs": log["epochs"][:2]})
    problems = check_member(MEMBER, root)
    assert any("2 of 3 epochs" in p for p in problems) and any("resume.pt" in p for p in problems)
    nan = [dict(e) for e in log["epochs"]]
    nan[1]["train_loss"] = float("nan")
    _write_log(directory, {**log, "epochs": nan})
    assert any("non-finite train_loss at epoch 2" in p for p in check_member(MEMBER, root))


def test_resume_one_epoch_ahead_is_reconciled_without_training(member, monkeypatch):
    root, directory = member
    full = _log(directory)
    _write_log(directory, {**full, "epochs": full["epochs"][:2]})  # the crash before log.json
    epochs = _count_epochs(monkeypatch)
    log = train_member(MEMBER, root=root, progress=False)
    assert epochs == [] and log.epochs == full["epochs"] and _log(directory) == full


def test_resume_that_cannot_be_reconciled_is_refused(member):
    root, directory = member
    full = _log(directory)
    state = torch.load(directory / "resume.pt", weights_only=True)
    _write_log(directory, {**full, "epochs": full["epochs"][:2]})
    torch.save({k: v for k, v in state.items() if k != "entry"}, directory / "resume.pt")
    with pytest.raises(PoolError, match="resume.pt is at epoch 3 but log.json records 2"):
        train_member(MEMBER, root=root, progress=False)
    longer = MemberSpec("Digits", ARCH, 0, TrainRecipe(4, milestones=(2,), weight_decay=0.005),
                        KEEP)
    _write_log(directory, full)
    torch.save({**state, "epoch": 2}, directory / "resume.pt")  # behind the log
    with pytest.raises(PoolError, match="resume.pt is at epoch 2 but log.json records 3"):
        train_member(longer, root=root, progress=False)
    (directory / "resume.pt").unlink()
    with pytest.raises(PoolError, match="resume.pt, needed to continue, is missing"):
        train_member(longer, root=root, progress=False)
