"""Replicate-batched iterations of DC, DSA and DM: the fresh networks of R replicates stacked, one
``vmap``-ed computation for all of them (:mod:`.loop` runs the batch).

Each replicate keeps its own draws: its fresh network (seeded as alone), its real batches and its
augmentation come from its own streams, in the order its run alone draws them; only the network
passes are stacked (``torch.func.stack_module_state``, ``functional_call`` under ``vmap``, as in
the evaluation :class:`~ptmdd_helpers.networks.ensemble.Ensemble`). The losses are summed before
the one backward pass, so each replicate's images get the gradient of their own loss. The result
equals the runs alone up to float rounding: the stacked kernels sum in another order
(``tests/test_replicas.py`` states the tolerance).

DC's per-class gradients are ``torch.func.grad`` of each class's mean cross-entropy, ``vmap``-ed
over the classes when every class has as many images (else one class after another) and over the
replicates; the synthetic side's stay differentiable w.r.t. the images. The inner loop trains
the stacked networks on each replicate's own images
(:meth:`~ptmdd_helpers.networks.ensemble.Ensemble.train_epoch`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data.augment import augment_per_sample
from ..networks.ensemble import Ensemble
from ..networks.models import freeze_batchnorm, is_batchnorm_model
from ..networks.training import full_precision
from .engine import DistillState, step_replicas
from .matching import match_loss


class _Embedding(nn.Module):
    """A network whose forward is its ``embed`` (DM matches embeddings), for ``functional_call``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


def _per_replicate(batches: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Class by class, the replicates' tensors stacked: ``batches[r][c]`` → ``[c]: (R, n_c, ...)``."""
    return [torch.stack(parts) for parts in zip(*batches, strict=True)]


def _class_means(embeddings: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Per replicate and class, the mean embedding: (R, Σ counts, D) → (R, C, D)."""
    return torch.stack([part.mean(1) for part in embeddings.split(list(counts), dim=1)], dim=1)


def dm_batch_iteration(states: Sequence[DistillState]) -> list[torch.Tensor]:
    """:func:`~.dm.dm_iteration` of every replicate, their networks' passes stacked."""
    nets = []
    for state in states:
        net = state.fresh_network()
        net.train()
        nets.append(_Embedding(net))
    stack = Ensemble(nets)
    params = {name: tensor.detach() for name, tensor in stack.params.items()}  # frozen networks
    embed = vmap(lambda p, b, x: functional_call(stack.structure, (p, b), (x,)))
    first = states[0]
    losses = [torch.zeros((), device=first.device) for _ in states]
    if first.matches:
        batches = [s.class_batches(s.generator("real"), s.generator("augment")) for s in states]
        real_counts = [len(part) for part in batches[0][0]]
        syn_counts = [len(part) for part in batches[0][1]]
        reals = torch.stack([torch.cat(list(real)) for real, _ in batches])
        syns = torch.stack([torch.cat(list(syn)) for _, syn in batches])
        with first.autocast():
            with torch.no_grad():
                real_means = _class_means(full_precision(embed(params, stack.buffers, reals)),
                                         real_counts)
            syn_means = _class_means(full_precision(embed(params, stack.buffers, syns)), syn_counts)
        distances = ((real_means - syn_means) ** 2).sum(dim=(1, 2))
        losses = [loss + distance for loss, distance in zip(losses, distances, strict=True)]
    return step_replicas(states, losses)  # adds each replicate's PTM loss


def _matching_losses(stack: Ensemble, matched: Sequence[str], metric: str,
                     reals: list[torch.Tensor], syns: list[torch.Tensor]) -> torch.Tensor:
    """Per replicate, DC's matching loss summed over classes: (R,). ``reals[c]``, ``syns[c]``:
    the replicates' images of class c, (R, n_c, ...)."""
    params = {name: tensor.detach() for name, tensor in stack.params.items()}
    fixed = {name: t for name, t in params.items() if name not in matched}
    varied = {name: params[name] for name in matched}

    def class_loss(varied, fixed, buffers, images, label):
        logits = functional_call(stack.structure, ({**varied, **fixed}, buffers), (images,))
        return F.cross_entropy(logits, label.expand(len(images)))

    class_gradient = grad(class_loss)

    def class_distance(varied, fixed, buffers, real, syn, label):
        g_real = class_gradient(varied, fixed, buffers, real, label)
        g_syn = class_gradient(varied, fixed, buffers, syn, label)
        return match_loss([g_syn[n] for n in matched], [g_real[n].detach() for n in matched],
                          metric)

    labels = torch.arange(len(reals), device=reals[0].device)
    if len({r.shape[1] for r in reals}) == 1 and len({s.shape[1] for s in syns}) == 1:
        def replicate(varied, fixed, buffers, real, syn):  # every class in one vmap
            return vmap(class_distance, in_dims=(None, None, None, 0, 0, 0))(
                varied, fixed, buffers, real, syn, labels).sum()

        return vmap(replicate)(varied, fixed, stack.buffers, torch.stack(reals, 1),
                               torch.stack(syns, 1))

    def replicate_looped(varied, fixed, buffers, reals, syns):  # classes of unequal sizes
        return sum(class_distance(varied, fixed, buffers, real, syn, labels[c])
                   for c, (real, syn) in enumerate(zip(reals, syns, strict=True)))

    return vmap(replicate_looped)(varied, fixed, stack.buffers, reals, syns)


def _freeze_batchnorm(stack: Ensemble, states: Sequence[DistillState], generators) -> None:
    """:func:`~.dc.freeze_batchnorm_statistics` for the stacked networks: each replicate's running
    statistics from its own real batch (train-mode forward), then BatchNorm in eval mode."""
    first = states[0]
    reals = torch.stack([s.data.sample_classes(s.spec.bn_batch_per_class, g)[0]
                         for s, g in zip(states, generators, strict=True)]).to(first.device)
    with torch.no_grad():
        stack.forward(reals, train=True)  # in the spec's precision, updating the stacked buffers
    freeze_batchnorm(stack.structure)


def dc_batch_iteration(states: Sequence[DistillState]) -> list[torch.Tensor]:
    """:func:`~.dc.dc_iteration` (DC and DSA) of every replicate, their networks stacked."""
    first = states[0]
    spec = first.spec
    reals_g = [s.generator("real") for s in states]
    augment_g = [s.generator("augment") for s in states]
    order_g = [s.generator("inner order") for s in states]
    nets = [s.fresh_network() for s in states]
    uses_bn = is_batchnorm_model(nets[0])
    stack = Ensemble(nets, spec.precision)
    matched = [name for name, p in nets[0].named_parameters()
               if spec.metric != "ours" or p.dim() > 1]
    net_optimizer = torch.optim.SGD(stack.parameters(), lr=spec.lr_net)
    augment = (lambda x, g: augment_per_sample(x, first.dsa, g)) if spec.uses_dsa else None
    totals = [torch.zeros((), device=first.device) for _ in states]
    for outer in range(spec.outer_loop):
        stack.structure.train()
        if uses_bn:
            _freeze_batchnorm(stack, states, reals_g)
        losses = [torch.zeros((), device=first.device) for _ in states]
        if first.matches:
            batches = [s.class_batches(r, a) for s, r, a in zip(states, reals_g, augment_g,
                                                                strict=True)]
            reals = _per_replicate([real for real, _ in batches])
            syns = _per_replicate([syn for _, syn in batches])
            with first.autocast():
                distances = _matching_losses(stack, matched, spec.metric, reals, syns)
            losses = [loss + d for loss, d in zip(losses, distances, strict=True)]
        steps = step_replicas(states, losses)  # adds each replicate's PTM loss
        totals = [t + s for t, s in zip(totals, steps, strict=True)]
        if outer == spec.outer_loop - 1:
            break
        synthetic = torch.stack([s.images.detach().clone() for s in states])
        for _ in range(spec.inner_loop):
            stack.train_epoch(net_optimizer, synthetic, first.labels, spec.batch_train, order_g,
                              augment, augment_g, per_network_images=True)
    return [t / spec.outer_loop for t in totals]
