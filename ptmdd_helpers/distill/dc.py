"""DC (gradient matching) and DSA (DC with Siamese augmentation): one iteration."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import augment_per_sample, siamese_augment
from ..models import is_batchnorm_model
from ..training import train_epoch
from .engine import DistillState
from .matching import match_loss, matched_parameters


def freeze_batchnorm_statistics(net: nn.Module, state: DistillState, generator) -> None:
    """Set BatchNorm running statistics from a real batch per class, then keep them fixed."""
    real, _ = state.data.sample_classes(state.spec.bn_batch_per_class, generator)
    net.train()
    with torch.no_grad():
        net(real.to(state.device))
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def class_matching_loss(
    net: nn.Module, params: list[torch.Tensor], state: DistillState, label: int, generator
) -> torch.Tensor:
    """Gradient-matching distance between a real batch and the synthetic images of one class."""
    spec = state.spec
    real = state.data.sample_class(label, spec.batch_real, generator).to(state.device)
    syn = state.images[state.class_slice(label)]
    if spec.uses_dsa:
        real, syn = siamese_augment([real, syn], state.dsa, generator)
    real_targets = torch.full((len(real),), label, device=state.device)
    syn_targets = torch.full((len(syn),), label, device=state.device)
    grads_real = torch.autograd.grad(F.cross_entropy(net(real), real_targets), params)
    grads_real = [g.detach() for g in grads_real]
    grads_syn = torch.autograd.grad(F.cross_entropy(net(syn), syn_targets), params,
                                    create_graph=True)
    return match_loss(grads_syn, grads_real, spec.metric)


def dc_iteration(state: DistillState) -> float:
    """One DC/DSA iteration: a fresh network, ``outer_loop`` image updates with inner training."""
    spec = state.spec
    generator = state.generator("dc")
    net = state.fresh_network()
    net.train()
    params = matched_parameters(list(net.parameters()), spec.metric)
    net_optimizer = torch.optim.SGD(net.parameters(), lr=spec.lr_net)
    uses_bn = is_batchnorm_model(net)
    augment = (lambda x, g: augment_per_sample(x, state.dsa, g)) if spec.uses_dsa else None
    total = 0.0
    for outer in range(spec.outer_loop):
        if uses_bn:
            freeze_batchnorm_statistics(net, state, generator)
        loss = torch.zeros((), device=state.device)
        if spec.guidance is None or not spec.guidance.ptm_only:
            for label in range(state.data.info.num_classes):
                loss = loss + class_matching_loss(net, params, state, label, generator)
        if state.guidance is not None:
            loss = loss + state.guidance.loss(state.images, state.labels, generator)
        total += state.step(loss)
        if outer == spec.outer_loop - 1:
            break
        synthetic = state.images.detach().clone()
        for _ in range(spec.inner_loop):
            train_epoch(net, net_optimizer, synthetic, state.labels, spec.batch_train, generator,
                        augment)
    return total / spec.outer_loop
