"""MTT (matching training trajectories, Cazenavette et al., CVPR 2022): one iteration.

Per iteration an expert k and a start epoch t ∈ [0, T+) are drawn (stream ``"expert"``); θ_t and
θ_{t+M} are that expert's checkpoints (:class:`~ptmdd_helpers.experts.Experts`). From θ_t the
student takes N SGD steps on mini-batches of the synthetic set (``batch_syn`` images, a fresh
permutation whenever one is used up, stream ``"inner order"``; per-image DSA in MTT's way, stream
``"augment"``), with the learned learning rate η: θ_{n+1} = θ_n − η ∇ CE(f(x_n; θ_n), y_n),
differentiably (``torch.func.functional_call`` on flattened parameters; nothing is updated in
place, so the experts' tensors are never touched). The loss is
‖θ_N − θ_{t+M}‖² / ‖θ_t − θ_{t+M}‖²; it updates the images (SGD, ``lr_img``, momentum 0.5) and η
(SGD, ``lr_lr``, momentum 0.5). CLoM / CCLoM add α · L_PTM once per iteration, as in DM.
Defaults and their sources: docs/method.md#mtt-trajectory-matching.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..augment import augment_per_sample
from ..training import autocast, full_precision
from .engine import DistillState


def parameter_layout(net: nn.Module) -> tuple[list[str], list[torch.Size]]:
    """The names and shapes of ``net``'s parameters, in the order θ is flattened."""
    named = list(net.named_parameters())
    return [name for name, _ in named], [p.shape for _, p in named]


def unflatten(flat: torch.Tensor, names: list[str], shapes: list[torch.Size]) -> dict:
    """θ as ``{name: tensor}`` views of ``flat`` (gradients flow back to ``flat``)."""
    parts = torch.split(flat, [s.numel() for s in shapes])
    return {name: part.view(shape) for name, part, shape in zip(names, parts, shapes, strict=True)}


def student_trajectory(
    net: nn.Module, start: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
    lr: torch.Tensor, steps: int, batch: int, order: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """θ_N: ``steps`` differentiable SGD steps from ``start`` (flat, requires grad) on the set;
    the forward passes in ``precision`` (bf16: under autocast; augmentation and loss in fp32)."""
    names, shapes = parameter_layout(net)
    batch = batch or len(images)
    params, queue = start, []
    for _ in range(steps):
        if not queue:
            queue = list(torch.randperm(len(images), generator=order).to(images.device).split(batch))
        chosen = queue.pop(0)
        x = images[chosen]
        if augment is not None:
            x = augment(x)
        with autocast(images.device, precision):
            logits = full_precision(functional_call(net, unflatten(params, names, shapes), (x,)))
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels[chosen]), params,
                                      create_graph=True)
        params = params - lr * grad
    return params


def trajectory_loss(final: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖θ_N − θ_{t+M}‖² / ‖θ_t − θ_{t+M}‖² (flattened parameters)."""
    return ((final - target) ** 2).sum() / ((start - target) ** 2).sum()


def mtt_iteration(state: DistillState) -> torch.Tensor:
    """One MTT iteration; returns the loss, a tensor on the device (not read here)."""
    spec, trajectory = state.spec, state.spec.trajectory
    if state.student is None:
        state.student = state.fresh_network().train()  # its own weights are never used
    net = state.student
    draw = state.generator("expert")
    expert = int(torch.randint(trajectory.n_experts, (), generator=draw))
    start_epoch = int(torch.randint(trajectory.max_start_epoch, (), generator=draw))
    loss = torch.zeros((), device=state.device)
    if spec.guidance is None or not spec.guidance.ptm_only:
        names, _ = parameter_layout(net)
        start = state.experts.flat(expert, start_epoch, names).to(state.device)
        target = state.experts.flat(expert, start_epoch + trajectory.expert_epochs,
                                    names).to(state.device)
        augment_generator = state.generator("augment")
        augment = ((lambda x: augment_per_sample(x, state.dsa, augment_generator))
                   if spec.uses_dsa else None)
        final = student_trajectory(
            net, start.clone().requires_grad_(True), state.images, state.labels,
            state.learned_lr, trajectory.syn_steps, trajectory.batch_syn,
            state.generator("inner order"), augment, spec.precision,
        )
        loss = loss + trajectory_loss(final, start, target)
    if state.guidance is not None:
        loss = loss + state.guidance.loss(state.images, state.labels, state.generator("guidance"))
    return state.step(loss)
