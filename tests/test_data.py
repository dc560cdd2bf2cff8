"""The dataset registry: offline sets, the shared FashionMNIST copy, fakes for CIFAR/SVHN/TinyImageNet."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from ptmdd_helpers.data import datasets as data
from ptmdd_helpers.data import offline
from ptmdd_helpers.data.datasets import DataUnavailableError, get_info, load_dataset
from ptmdd_helpers.seeding import make_generator


@pytest.mark.parametrize(
    ("name", "shape", "n_train", "n_test"),
    [("Digits", (1, 8, 8), 1437, 360), ("MNIST5k", (1, 28, 28), 4000, 1000),
     ("MNIST5k8", (1, 8, 8), 4000, 1000), ("Digits28", (1, 28, 28), 1437, 360)],
)
def test_offline_datasets_load_with_shapes_and_labels(name, shape, n_train, n_test):
    ds = load_dataset(name)
    assert ds.train_images.shape == (n_train, *shape)
    assert ds.test_images.shape == (n_test, *shape)
    assert sorted(ds.train_labels.unique().tolist()) == list(range(10))
    assert sorted(ds.test_labels.unique().tolist()) == list(range(10))
    assert sum(ds.class_count(c) for c in range(10)) == n_train
    # normalized with the registered mean/std: close to zero mean, unit std
    assert abs(ds.train_images.mean().item()) < 0.05
    assert abs(ds.train_images.std().item() - 1) < 0.05


def test_offline_split_is_deterministic_and_disjoint():
    ds = load_dataset("Digits")
    again = offline.digits_loader(None)
    assert torch.equal(data.normalize(again[0], ds.info), ds.train_images)
    flat_train = {tuple(x.flatten().tolist()) for x in ds.train_images[:200]}
    flat_test = {tuple(x.flatten().tolist()) for x in ds.test_images}
    assert len(flat_train & flat_test) < 5  # the digits set has a few duplicate images at most


def test_offline_tensors_are_built_once_then_read_back_verified(tmp_path):
    built = []

    def build():
        built.append(1)
        return offline.digits_loader(None)

    first = offline.cached_tensors("Digits", build, data.SKLEARN, tmp_path)
    again = offline.cached_tensors("Digits", build, data.SKLEARN, tmp_path)
    assert len(built) == 1 and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    (path,) = tmp_path.glob("Digits-*.pt")
    saved = torch.load(path, weights_only=True)
    saved["tensors"][0][0, 0, 0, 0] += 1.0  # a changed pixel no longer matches the digest
    torch.save(saved, path)
    assert torch.equal(offline.cached_tensors("Digits", build, data.SKLEARN, tmp_path)[0], first[0])
    path.write_bytes(b"not a tensor file")
    assert torch.equal(offline.cached_tensors("Digits", build, data.SKLEARN, tmp_path)[0], first[0])
    assert len(built) == 3
    # another source package (or version) is another file, built again
    offline.cached_tensors("Digits", build, ("numpy",), tmp_path)
    assert len(built) == 4 and len(list(tmp_path.glob("Digits-*.pt"))) == 2


def test_load_once_per_process():
    assert load_dataset("Digits") is load_dataset("Digits")


def test_class_sampling_follows_generator():
    ds = load_dataset("Digits")
    a, la = ds.sample_classes(5, make_generator("t", 1))
    b, lb = ds.sample_classes(5, make_generator("t", 1))
    c, _ = ds.sample_classes(5, make_generator("t", 2))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert la.tolist() == [c for c in range(10) for _ in range(5)]
    for label in range(10):
        block = a[la == label]
        members = ds.train_images[ds.class_indices[label]]
        assert all((members == img).all(dim=(1, 2, 3)).any() for img in block)


def test_fashion_mnist_from_shared_read_only_copy(shared_data):
    ds = load_dataset("FashionMNIST", shared_data)
    assert ds.train_images.shape == (60000, 1, 28, 28)
    assert ds.test_images.shape == (10000, 1, 28, 28)
    assert [ds.class_count(c) for c in range(10)] == [6000] * 10
    assert ds.info.class_names[9] == "Ankle boot"


def _rows(images: torch.Tensor) -> list[tuple[float, ...]]:
    return sorted(tuple(x.flatten().tolist()) for x in images)


def test_a_validation_split_holds_out_a_tenth_of_each_class_of_the_training_set():
    whole, split = load_dataset("Digits"), load_dataset("Digits-val")
    assert split.info.name == "Digits-val" and split.info.mean == whole.info.mean
    counts = [whole.class_count(c) for c in range(10)]
    held = [math.ceil(0.1 * n) for n in counts]
    assert split.test_labels.bincount().tolist() == held
    assert [split.class_count(c) for c in range(10)] == [n - h for n, h in zip(counts, held, strict=True)]
    # the two parts are the training set (images with their labels), and its test set is left out
    both = torch.cat([split.train_images, split.test_images])
    labels = torch.cat([split.train_labels, split.test_labels])
    assert _rows(torch.cat([both.flatten(1), labels[:, None]], 1)) == _rows(
        torch.cat([whole.train_images.flatten(1), whole.train_labels[:, None]], 1))
    assert not set(_rows(split.test_images)) & set(_rows(whole.test_images))
    assert "Digits-val" not in data.list_datasets()


def test_a_validation_split_is_a_dataset_of_its_own_for_runs_and_the_command_line(tmp_path, capsys):
    from ptmdd_helpers.cli.commands import main
    from ptmdd_helpers.distill import make_spec
    from ptmdd_helpers.specs import spec_id
    from ptmdd_helpers.store.runstore import RunStore

    specs = [make_spec(name, "DM", 1, iterations=2, model="ConvNetW32")
             for name in ("Digits-val", "Digits")]
    assert spec_id(specs[0]) != spec_id(specs[1])
    assert main(["distill", "--dataset", "Digits-val", "--method", "DM", "--ipc", "1",
                 "--iterations", "2", "--model", "ConvNetW32", "--eval-nets", "1",
                 "--eval-epochs", "2", "--store", str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    (evaluation,) = RunStore(tmp_path).runs("evaluation")
    assert evaluation.metrics["summary"]["n"] == 1 and "Digits-val" in json.dumps(evaluation.spec)
    with pytest.raises(ValueError, match="each one's validation split <name>-val"):
        get_info("Digits-test")
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert "Digits-val" not in listing and "Each NAME also has NAME-val" in listing


def test_fashion_mnist_validation_split_from_the_shared_copy(shared_data):
    split = load_dataset("FashionMNIST-val", shared_data)
    assert split.train_images.shape == (54000, 1, 28, 28)
    assert split.test_labels.bincount().tolist() == [600] * 10


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="valid names:.*FashionMNIST"):
        get_info("ImageNet-1k")


def test_missing_dataset_names_root_and_how_to_fix(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DataUnavailableError) as info:
        load_dataset("MNIST", tmp_path / "empty")
    message = str(info.value)
    assert str((tmp_path / "empty").resolve()) in message
    assert "--data-root" in message and "PTMDD_DATA" in message


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("PTMDD_DATA", str(tmp_path / "env"))
    assert data.resolve_data_root("given") == data.Path("given")
    assert data.resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("PTMDD_DATA")
    monkeypatch.chdir(tmp_path)  # outside the project: the default is under the working directory
    assert data.resolve_data_root() == tmp_path / "data"


def _write_cifar_fake(root, folder, meta_key, n_classes, label_key):
    base = root / folder
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
             if folder == "cifar-10-batches-py" else ["train", "test"])
    for name in files:
        n = 20
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 label_key: [i % n_classes for i in range(n)]}
        with open(base / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(base / ("batches.meta" if folder == "cifar-10-batches-py" else "meta"), "wb") as fh:
        pickle.dump({meta_key: [f"c{i}" for i in range(n_classes)]}, fh)


@pytest.mark.parametrize(
    ("name", "folder", "meta_key", "n_classes", "label_key"),
    [("CIFAR10", "cifar-10-batches-py", "label_names", 10, "labels"),
     ("CIFAR100", "cifar-100-python", "fine_label_names", 100, "fine_labels")],
)
def test_cifar_code_path_on_a_fake(tmp_path, monkeypatch, name, folder, meta_key, n_classes,
                                   label_key):
    _write_cifar_fake(tmp_path, folder, meta_key, n_classes, label_key)
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # fakes have no md5
    ds = load_dataset(name, tmp_path)
    assert ds.train_images.shape == (100 if name == "CIFAR10" else 20, 3, 32, 32)
    assert ds.test_images.shape == (20, 3, 32, 32)
    assert ds.info.num_classes == n_classes


def test_svhn_code_path_on_a_fake(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {
            "X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
            "y": (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8),  # SVHN labels 1..10
        })
    import torchvision.datasets.svhn as svhn
    import torchvision.datasets.utils as tv_utils

    for module in (svhn, tv_utils):  # the fakes cannot match the real md5 sums
        monkeypatch.setattr(module, "check_integrity", lambda *args, **kwargs: True)
    ds = load_dataset("SVHN", tmp_path)
    assert ds.train_images.shape == (30, 3, 32, 32)
    assert sorted(ds.train_labels.unique().tolist()) == list(range(10))  # 10 → 0


def test_tiny_imagenet_folder_layout_on_a_fake(tmp_path):
    from PIL import Image

    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n001", "n002"]
    (base).mkdir()
    (base / "wnids.txt").write_text("\n".join(wnids))
    rng = np.random.default_rng(0)
    for w in wnids:
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                folder / f"{w}_{i}.JPEG")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i, w in enumerate(wnids):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t64\t64")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines))
    ds = load_dataset("TinyImageNet", tmp_path)
    assert ds.train_images.shape == (6, 3, 64, 64)
    assert ds.test_labels.tolist() == [0, 1]
    assert ds.class_count(1) == 3
