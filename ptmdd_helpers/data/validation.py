"""Validation splits: settings (α per architecture, MTT's hyperparameters) are chosen on data carved
from the training set, never on the test set.

``<Name>-val`` is dataset ``<Name>`` with a tenth of each class's training images held out as its
test set, and ``<Name>``'s own test set left out. It is a dataset like any other (``--dataset
FashionMNIST-val``, ``target: FashionMNIST-val`` in a profile): its pools are trained on the
remaining training images only, and its runs have run ids of their own.
"""

from __future__ import annotations

import math

import torch

SUFFIX = "-val"
FRACTION = 0.1  # of each class's training images, held out
SEED = 0  # the held-out images: the last ones of each class in this seed's random order


def base_name(name: str) -> str | None:
    """The dataset a validation split is carved from (``FashionMNIST`` for ``FashionMNIST-val``)."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) and len(name) > len(SUFFIX) else None


def held_count(class_size: float) -> int:
    """How many of a class's ``class_size`` training images are held out: ``ceil(FRACTION · n)``."""
    return math.ceil(FRACTION * class_size)


def held_out(train_images: torch.Tensor, train_labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(training images, labels, held-out images, labels): :func:`held_count` images of each
    class held out, both parts in their original order."""
    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(SEED))
    kept, held = [], []
    for label in torch.unique(train_labels).tolist():
        members = order[train_labels[order] == label]
        n_held = held_count(len(members))
        kept.append(members[: len(members) - n_held])
        held.append(members[len(members) - n_held:])
    kept_index, held_index = torch.cat(kept).sort().values, torch.cat(held).sort().values
    return (train_images[kept_index], train_labels[kept_index],
            train_images[held_index], train_labels[held_index])
