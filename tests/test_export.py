"""``ptmdd export``: a distillation's images and labels as a .pt of tensors and a PNG grid."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.data.datasets import get_info
from ptmdd_helpers.store.export import export_formats, export_run
from ptmdd_helpers.store.runstore import RunStore

IPC = 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with one tiny Digits distillation (DM, IPC 2) and its one-network evaluation."""
    root = tmp_path_factory.mktemp("export") / "store"
    assert main(["distill", "--dataset", "Digits", "--method", "DM", "--ipc", str(IPC),
                 "--iterations", "2", "--eval-nets", "1", "--eval-epochs", "1", "--store",
                 str(root), "--quiet", "--device", "cpu"]) == 0
    return RunStore(root)


def test_export_writes_a_loadable_pt_and_a_grid(store, tmp_path, capsys):
    run = store.runs("distill")[0]
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["export", run.id, "--out", str(out), "--store", str(store.root)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / f"{run.id}.pt"), str(out / f"{run.id}.png")]

    exported = torch.load(out / f"{run.id}.pt", weights_only=True)
    stored, info = run.tensors(), get_info("Digits")
    assert exported["images"].dtype == torch.float32 and exported["labels"].dtype == torch.int64
    assert exported["images"].shape == (info.num_classes * IPC, 1, 8, 8)
    assert torch.equal(exported["images"], stored["images"].float())
    assert torch.equal(exported["labels"], stored["labels"].long())
    assert exported["labels"].bincount().tolist() == [IPC] * info.num_classes
    assert exported["mean"] == pytest.approx(list(info.mean))
    assert exported["std"] == pytest.approx(list(info.std))
    assert (exported["dataset"], exported["ipc"], exported["run_id"]) == ("Digits", IPC, run.id)

    with Image.open(out / f"{run.id}.png") as grid:  # save_image pads 2 pixels around each image
        assert grid.size == (IPC * (8 + 2) + 2, info.num_classes * (8 + 2) + 2)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_one_format_and_the_python_entry_point(store, tmp_path):
    run = store.runs("distill")[0]
    assert export_run(run, tmp_path, "pt") == [tmp_path / f"{run.id}.pt"]
    assert [p.name for p in tmp_path.iterdir()] == [f"{run.id}.pt"]
    assert export_run(run, tmp_path / "png", ["png"]) == [tmp_path / "png" / f"{run.id}.png"]
    assert export_formats("both") == ("pt", "png")
    with pytest.raises(ValueError, match="unknown export format 'jpg'"):
        export_formats("jpg")


def test_a_bad_run_id_exits_2_with_a_message(store, tmp_path, capsys):
    code = main(["export", "distill-0000000000000000", "--out", str(tmp_path / "out"),
                 "--store", str(store.root)])
    assert code == 2
    err = capsys.readouterr().err
    assert "ptmdd export: error:" in err and "distill-0000000000000000" in err
    assert not (tmp_path / "out").exists()


def test_an_evaluation_run_is_refused(store, tmp_path, capsys):
    evaluation = store.runs("evaluation")[0]
    assert main(["export", evaluation.id, "--out", str(tmp_path), "--store",
                 str(store.root)]) == 2
    assert "not a distillation" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
