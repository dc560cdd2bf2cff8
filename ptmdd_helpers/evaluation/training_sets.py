"""What an evaluation trains on, and the keys of its networks: the checks of a training set and
of the architectures, the seed parts of the evaluation networks (common random numbers across the
sets compared at one seed), the random real subset, and the per-architecture summary of the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.datasets import LoadedDataset
from ..networks.models import list_models
from ..spread import mean_sd


def check_training_set(
    images: torch.Tensor, labels: torch.Tensor, data: LoadedDataset
) -> None:
    """Raise ``ValueError`` unless (images, labels) is a non-empty labelled set like ``data``."""
    info = data.info
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError("images and labels must be torch tensors")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            f"the training set is empty or not an (N, C, H, W) batch: images of shape "
            f"{tuple(images.shape)}"
        )
    expected = (info.channels, *info.image_size)
    if tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"{info.name} images are {expected} (C, H, W), got a training set of shape "
            f"{tuple(images.shape)}"
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must be one per image, shape ({images.shape[0]},); got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= info.num_classes:
        raise ValueError(
            f"labels must lie in [0, {info.num_classes}) for {info.name}; got [{low}, {high}]"
        )
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ValueError(
            f"the training images hold NaN or infinite values ({int((~torch.isfinite(images)).sum())} "
            f"of {images.numel()} pixels): networks trained on them learn nothing (chance accuracy)."
            f" Fix: evaluate finite images, e.g. a distillation that did not diverge (a lower "
            f"--lr-img), or replace the bad pixels")


def check_archs(archs: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``archs`` is a non-empty sequence of registered model names."""
    if isinstance(archs, str):
        raise ValueError(f"archs must be a sequence of names, got the string {archs!r}")
    if not archs:
        raise ValueError("no architectures to evaluate")
    valid = list_models()
    unknown = [a for a in archs if a not in valid]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; valid: {', '.join(valid)}")


def evaluation_seed_parts(dataset: str, seed: int) -> tuple:
    """The replicate key of the evaluation networks of a training set of ``dataset`` at ``seed``.

    It holds neither the set nor its method or guidance: the networks of two sets compared at one
    seed start from the same weights and see the same data order and augmentation (common random
    numbers); :func:`network_seed_parts` adds the network index, :func:`~.evaluate._network` the architecture.
    """
    return ("evaluate", dataset, int(seed))


def network_seed_parts(seed_parts: tuple, net: int) -> tuple:
    """The seed parts of network ``net`` of an evaluation seeded by ``seed_parts``."""
    return (*seed_parts, "net", int(net))


def random_real_subset(
    data: LoadedDataset, ipc: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` random real training images per class (no replacement), labels class by class."""
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc <= 0:
        raise ValueError(f"images per class (ipc) must be an int >= 1, got {ipc!r}")
    smallest = data.min_class_count()
    if ipc > smallest:
        raise ValueError(
            f"ipc={ipc} exceeds the smallest class of {data.info.name} ({smallest} training images)"
        )
    return data.sample_classes(ipc, generator)


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Per arch: mean, sample SD over the networks (ddof 1, ``None`` for one network) and n.

    The networks of one run share one training set, so this is the spread over networks; the
    study's "±" is over distillation seeds (:mod:`~ptmdd_helpers.spread`, the same helper).
    """
    by_arch: dict[str, list[float]] = {}
    for row in rows:
        by_arch.setdefault(row["arch"], []).append(float(row["accuracy"]))
    summary = {}
    for arch, values in by_arch.items():
        mean, sd, n = mean_sd(values)
        summary[arch] = {"mean": mean, "std": sd, "n": n}
    return summary
