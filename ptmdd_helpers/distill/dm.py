"""DM (distribution matching): one iteration."""

from __future__ import annotations

import torch

from ..augment import siamese_augment
from .engine import DistillState


def mean_embedding_distance(
    net: torch.nn.Module, reals: list[torch.Tensor], syns: list[torch.Tensor]
) -> torch.Tensor:
    """Σ over classes of ‖mean embed(real_c) − mean embed(syn_c)‖², one forward pass per side."""
    with torch.no_grad():
        real_embed = net.embed(torch.cat(reals))
    syn_embed = net.embed(torch.cat(syns))
    loss = syn_embed.new_zeros(())
    for real_part, syn_part in zip(
        real_embed.split([len(r) for r in reals]), syn_embed.split([len(s) for s in syns]),
        strict=True,
    ):
        loss = loss + ((real_part.mean(0) - syn_part.mean(0)) ** 2).sum()
    return loss


def dm_iteration(state: DistillState) -> float:
    """Match per-class mean embeddings of real and synthetic images under a fresh frozen network.

    Each class gets its own shared augmentation (real and synthetic alike); the embeddings of all
    classes come from one forward pass per side, then per-class means are compared.
    """
    spec = state.spec
    generator = state.generator("dm")
    net = state.fresh_network()
    net.train()
    net.requires_grad_(False)
    loss = torch.zeros((), device=state.device)
    if spec.guidance is None or not spec.guidance.ptm_only:
        num_classes = state.data.info.num_classes
        reals, syns = [], []
        for label in range(num_classes):
            real = state.data.sample_class(label, spec.batch_real, generator).to(state.device)
            syn = state.images[state.class_slice(label)]
            if spec.uses_dsa:
                real, syn = siamese_augment([real, syn], state.dsa, generator)
            reals.append(real)
            syns.append(syn)
        loss = loss + mean_embedding_distance(net, reals, syns)
    if state.guidance is not None:
        loss = loss + state.guidance.loss(state.images, state.labels, generator)
    return state.step(loss)
