"""DM (distribution matching): one iteration.

The network's embeddings of the real images of all classes come from forward passes over their
concatenation (and likewise for the synthetic images), then per-class means are compared. On a CPU
the passes hold about 64 MB of activations each (``grouped.images_per_pass``). A network in train
mode with BatchNorm couples the samples of a batch: it gets one pass per side over all classes, as
the original DM code does for its BatchNorm models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..networks.training import full_precision
from .engine import DistillState
from .grouped import couples_samples, images_per_pass
from .methods import Method, register_method
from .stacked import dm_batch_iteration


def embed_in_passes(net: nn.Module, images: torch.Tensor, pass_images: int | None = None) -> torch.Tensor:
    """``net.embed(images)``, computed ``pass_images`` images at a time where that is exact."""
    if pass_images is None:
        pass_images = images_per_pass(net, images[0], len(images))
    if couples_samples(net) or pass_images >= len(images):
        return full_precision(net.embed(images))
    return full_precision(torch.cat([net.embed(part) for part in images.split(pass_images)]))


def class_means(embeddings: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Per-class means of embeddings stored class by class, ``counts[c]`` rows each: (C, D)."""
    return torch.stack([part.mean(0) for part in embeddings.split(list(counts))])


def mean_embedding_distance(
    net: nn.Module, reals: Sequence[torch.Tensor], syns: Sequence[torch.Tensor],
    pass_images: int | None = None,
) -> torch.Tensor:
    """Σ over classes of ‖mean embed(real_c) − mean embed(syn_c)‖², all classes per pass."""
    with torch.no_grad():
        real_means = class_means(embed_in_passes(net, torch.cat(list(reals)), pass_images),
                                 [len(r) for r in reals])
    syn_means = class_means(embed_in_passes(net, torch.cat(list(syns)), pass_images),
                            [len(s) for s in syns])
    return ((real_means - syn_means) ** 2).sum()


def looped_mean_embedding_distance(
    net: nn.Module, reals: Sequence[torch.Tensor], syns: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The same distance with one forward per class and side (the reference for non-BN models)."""
    loss = None
    for real, syn in zip(reals, syns, strict=True):
        with torch.no_grad():
            real_mean = full_precision(net.embed(real)).mean(0)
        term = ((real_mean - full_precision(net.embed(syn)).mean(0)) ** 2).sum()
        loss = term if loss is None else loss + term
    return loss


def dm_iteration(state: DistillState) -> torch.Tensor:
    """Match per-class mean embeddings of real and synthetic images under a fresh frozen network.

    Each class gets its own shared augmentation (real and synthetic alike), drawn class by class.
    Real batches and augmentation draw from their own streams. Returns the loss, a
    tensor on the device (not read here).
    """
    net = state.fresh_network()
    net.train()
    net.requires_grad_(False)
    loss = torch.zeros((), device=state.device)
    if state.matches:
        reals, syns = state.class_batches(state.generator("real"), state.generator("augment"))
        with state.autocast():
            if state.batched or couples_samples(net):
                loss = loss + mean_embedding_distance(net, reals, syns)
            else:
                loss = loss + looped_mean_embedding_distance(net, reals, syns)
    return state.step(loss)  # adds the PTM loss


DM = register_method(Method(
    "DM", dm_iteration, iterations=20000, lr_img=1.0, init="real", siamese=True,
    eval_epochs=1000, eval_augment="dsa", batch_iteration=dm_batch_iteration,
    description="distribution matching (Zhao & Bilen, WACV 2023)"))
