"""DC (gradient matching) and DSA (DC with Siamese augmentation): one iteration.

Per outer step, the real batch and the synthetic images of every class are drawn (and, in DSA,
augmented with one shared transform per class) in class order, exactly as a loop over classes
would draw them. The per-class gradients then come from :mod:`.grouped`: the images of all
classes, concatenated class by class, go through the network in passes (sized by
``grouped.images_per_pass``: on a CPU about 64 MB of activations, elsewhere all at once); a
pass may hold several classes, and a class's gradients add up over the passes it spans. A network
for which this is not exact (``grouped_support``; none of the registered models during matching,
where BatchNorm is frozen in eval mode) falls back to one forward/backward per class,
:func:`looped_matching_loss`, which is also the reference the tests compare the batched path with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import augment_per_sample
from ..data.eval_augment import dc_reference_augment
from ..networks.models import freeze_batchnorm, is_batchnorm_model
from ..networks.training import train_epoch, with_precision
from .engine import DistillState
from .grouped import grouped_support, images_per_pass, per_group_gradients
from .matching import match_loss, match_loss_per_class, matched_parameters
from .methods import Method, register_method
from .stacked import dc_batch_iteration


def freeze_batchnorm_statistics(net: nn.Module, state: DistillState, generator) -> None:
    """Set BatchNorm running statistics from a real batch per class, then keep them fixed."""
    real, _ = state.data.sample_classes(state.spec.bn_batch_per_class, generator)
    net.train()
    with torch.no_grad():
        net(real.to(state.device))
    freeze_batchnorm(net)


def looped_matching_loss(
    net: nn.Module, params: list[torch.Tensor], reals: Sequence[torch.Tensor],
    syns: Sequence[torch.Tensor], metric: str,
) -> torch.Tensor:
    """Σ over classes of the matching distance, one forward/backward per class and side."""
    loss = None
    for label, (real, syn) in enumerate(zip(reals, syns, strict=True)):
        real_targets = torch.full((len(real),), label, device=real.device)
        syn_targets = torch.full((len(syn),), label, device=syn.device)
        grads_real = torch.autograd.grad(F.cross_entropy(net(real), real_targets), params)
        grads_real = [g.detach() for g in grads_real]
        grads_syn = torch.autograd.grad(F.cross_entropy(net(syn), syn_targets), params,
                                        create_graph=True)
        term = match_loss(grads_syn, grads_real, metric)
        loss = term if loss is None else loss + term
    return loss


def _class_inputs(parts: Sequence[torch.Tensor]):
    """Concatenated images, their class targets and weights 1/n_c (each class's mean loss)."""
    device = parts[0].device
    counts = [len(p) for p in parts]
    targets = torch.arange(len(parts), device=device).repeat_interleave(
        torch.tensor(counts, device=device))
    weights = (1.0 / torch.tensor(counts, dtype=parts[0].dtype, device=device))[targets]
    return torch.cat(list(parts)), targets, weights, counts


def class_gradients(
    net: nn.Module, params: list[torch.Tensor], parts: Sequence[torch.Tensor],
    pass_images: int | None = None, create_graph: bool = False,
) -> list[torch.Tensor]:
    """Per class, the gradient of the mean loss on that class's images ``parts[c]``: (C, *param).

    The images, concatenated class by class, go through the network ``pass_images`` at a time; a
    pass may hold several classes (each gets its own gradient) and a class may span several
    passes (its gradients add up).
    """
    images, targets, weights, counts = _class_inputs(parts)
    if pass_images is None:
        pass_images = images_per_pass(net, images[0], len(images))
    if pass_images >= len(images):
        return per_group_gradients(net, params, images, targets, weights, counts,
                                   create_graph=create_graph)
    ends = torch.tensor(counts).cumsum(0).tolist()
    total: list[list[torch.Tensor | None]] = [[None] * len(parts) for _ in params]
    for start in range(0, len(images), pass_images):
        stop = min(start + pass_images, len(images))
        first = next(c for c, end in enumerate(ends) if end > start)
        last = next(c for c, end in enumerate(ends) if end >= stop)
        sizes = [min(stop, ends[c]) - max(start, ends[c] - counts[c]) for c in range(first, last + 1)]
        grads = per_group_gradients(net, params, images[start:stop], targets[start:stop],
                                    weights[start:stop], sizes, create_graph=create_graph)
        for into, grad in zip(total, grads, strict=True):
            for c, g in zip(range(first, last + 1), grad, strict=True):
                into[c] = g if into[c] is None else into[c] + g
    return [torch.stack(per_class) for per_class in total]


def batched_matching_loss(
    net: nn.Module, params: list[torch.Tensor], reals: Sequence[torch.Tensor],
    syns: Sequence[torch.Tensor], metric: str, pass_images: int | None = None,
) -> torch.Tensor:
    """:func:`looped_matching_loss` with the classes batched (exact where ``grouped_support``)."""
    grads_real = class_gradients(net, params, reals, pass_images)
    grads_syn = class_gradients(net, params, syns, pass_images, create_graph=True)
    return match_loss_per_class(grads_syn, grads_real, metric).sum()


def matching_loss(
    net: nn.Module, params: list[torch.Tensor], reals: Sequence[torch.Tensor],
    syns: Sequence[torch.Tensor], metric: str, batched: bool = True,
) -> torch.Tensor:
    """The DC matching loss summed over classes: batched when exact, else class by class."""
    if batched and grouped_support(net, params) is None:
        return batched_matching_loss(net, params, reals, syns, metric)
    return looped_matching_loss(net, params, reals, syns, metric)


def dc_iteration(state: DistillState) -> torch.Tensor:
    """One DC/DSA iteration: a fresh network, ``outer_loop`` image updates with inner training.

    Real batches (and BatchNorm's statistics batches), augmentation (matching and inner loop)
    and the inner loop's batch order draw from their own streams. Returns the mean loss of the
    outer steps, a tensor on the device (not read here).
    """
    spec = state.spec
    real_generator, augment_generator = state.generator("real"), state.generator("augment")
    order_generator = state.generator("inner order")
    net = state.fresh_network()
    net.train()
    params = matched_parameters(list(net.parameters()), spec.metric)
    net_optimizer = torch.optim.SGD(net.parameters(), lr=spec.lr_net)
    uses_bn = is_batchnorm_model(net)
    augment = (lambda x, g: augment_per_sample(x, state.dsa, g)) if spec.uses_dsa else None
    total = torch.zeros((), device=state.device)
    for outer in range(spec.outer_loop):
        if uses_bn:
            with state.autocast():
                freeze_batchnorm_statistics(net, state, real_generator)
        loss = torch.zeros((), device=state.device)
        if state.matches:
            reals, syns = state.class_batches(real_generator, augment_generator)
            with state.autocast():
                loss = loss + matching_loss(net, params, reals, syns, spec.metric, state.batched)
        total += state.step(loss)  # adds the PTM loss
        if outer == spec.outer_loop - 1:
            break
        synthetic = state.images.detach().clone()
        trained = with_precision(net, spec.precision)  # forward in bf16, augmentation in fp32
        for _ in range(spec.inner_loop):
            train_epoch(trained, net_optimizer, synthetic, state.labels, spec.batch_train,
                        order_generator, augment, augment_generator)
    return total / spec.outer_loop


# DC's evaluation: 300 epochs, the reference's augmentation (crop_scale_rotate on MNIST, crop_noise
# for ConvNetBN); DSA's: 1000 epochs with DSA (docs/method.md#evaluation-protocol).
DC = register_method(Method(
    "DC", dc_iteration, iterations=1000, lr_img=0.1, init="noise", siamese=False,
    eval_epochs=300, eval_augment="none", eval_reference_augment=dc_reference_augment,
    batch_iteration=dc_batch_iteration, loops=True,
    description="gradient matching (Zhao et al., ICLR 2021)"))
DSA = register_method(Method(
    "DSA", dc_iteration, iterations=1000, lr_img=0.1, init="noise", siamese=True,
    eval_epochs=1000, eval_augment="dsa", batch_iteration=dc_batch_iteration, loops=True,
    description="gradient matching with differentiable Siamese augmentation (Zhao & Bilen, 2021)"))
