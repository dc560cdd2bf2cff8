"""N networks of one architecture trained together: stacked parameters, one ``vmap``-ed forward.

:class:`Ensemble` stacks the parameters and buffers of N models of the same architecture with
``torch.func.stack_module_state`` and runs them with ``torch.func.functional_call`` under
``torch.func.vmap``. Its :meth:`Ensemble.train_epoch` and :meth:`Ensemble.accuracy` are the
ensemble versions of :func:`~ptmdd_helpers.networks.training.train_epoch` and
:func:`~ptmdd_helpers.networks.training.accuracy`: network ``i`` sees what the loop would show it with
``generators[i]`` -- the same mini-batch order and the same augmentation draws (all randomness is
drawn outside ``vmap``, from each network's own generator, in the loop's order: the epoch's
permutation, then one augmentation call per mini-batch) -- and its loss is its own mean
cross-entropy; the N losses are summed, so each network's gradient is its own. The optimizer is
torch's SGD over the stacked tensors (:func:`~ptmdd_helpers.networks.training.make_optimizer`): momentum,
weight decay and the learning rate are elementwise, so network ``i``'s update is the loop's.

Equality with the loop is exact in the random draws and up to float arithmetic in the results:
the batched kernels (a grouped convolution, a batched matrix product) sum in another order, which
moves single forward/backward values by ~1e-7 and trained parameters by ~1e-6 after a few epochs
(see ``tests/test_ensemble.py``); a test prediction can flip only on a near-tie.

Which models work. :func:`ensemble_support` runs a two-network forward and backward (training
mode) and an evaluation-mode forward under ``vmap``; a model whose ``vmap`` raises cannot be
ensembled and is trained in the loop. With torch 2.x every registered architecture passes,
BatchNorm ones included: their running statistics are stacked buffers, updated per network
inside ``vmap``, and the batch statistics are each network's own. Models that fail are those with
random operations inside the forward (``nn.Dropout`` in training mode: ``vmap`` refuses
randomness by default, and the loop's global-RNG stream could not be reproduced anyway), with
data-dependent Python control flow (``.item()``, ``if x.sum() > 0``), or with in-place updates
of their inputs.

Speed. On a GPU the ensemble replaces N small kernel launches by one. On CPU it is slower than
the loop (``benchmarks/bench.py --only eval20 --compare``; numbers in ``benchmarks/README.md``): a
grouped convolution costs about what the N convolutions cost, and ``vmap`` adds copies between the
layouts of its batching rules (the convolution's ``(B, N*C, H, W)`` and the normalization's
``(N*B, C, H, W)``) and a separate affine pass in group norm;
:func:`~ptmdd_helpers.evaluation.evaluate.evaluate_images` therefore uses it on CUDA by default.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .training import Augment, autocast, check_precision, inference_batch_size

__all__ = ["Ensemble", "ensemble_support"]


def _signature(model: nn.Module) -> tuple:
    """Class, parameter and buffer names, shapes and dtypes: what must agree to stack models."""
    return (
        type(model),
        tuple((n, tuple(p.shape), p.dtype) for n, p in model.named_parameters()),
        tuple((n, tuple(b.shape), b.dtype) for n, b in model.named_buffers()),
    )


class Ensemble:
    """N models of one architecture as stacked parameters/buffers, run with ``vmap``."""

    def __init__(self, models: Sequence[nn.Module], precision: str = "fp32") -> None:
        check_precision(precision)
        self.precision = precision  # of the forward passes (training.PRECISIONS)
        models = list(models)
        if not models:
            raise ValueError("an ensemble needs at least one model")
        first = _signature(models[0])
        for index, model in enumerate(models[1:], start=1):
            if _signature(model) != first:
                raise ValueError(
                    f"model {index} ({type(model).__name__}) differs from model 0 "
                    f"({type(models[0]).__name__}) in class or parameter/buffer shapes; an "
                    f"ensemble stacks networks of one architecture"
                )
        if not any(True for _ in models[0].parameters()):
            raise ValueError(f"{type(models[0]).__name__} has no parameters to train")
        self.size = len(models)
        # stack_module_state refuses models in mixed train/eval modes; the mode is set per call
        for model in models:
            model.train()
        self.params, self.buffers = stack_module_state(models)
        self._base = copy.deepcopy(models[0]).to("meta")  # structure only; weights come stacked

    def __len__(self) -> int:
        return self.size

    def parameters(self) -> Iterator[torch.Tensor]:
        """The stacked parameters (leading dimension N): what the optimizer updates."""
        return iter(self.params.values())

    @property
    def structure(self) -> nn.Module:
        """The architecture without weights (on the meta device), for ``functional_call`` with
        the stacked tensors (or views of them) under ``vmap``."""
        return self._base

    @property
    def device(self) -> torch.device:
        """Device of the stacked parameters."""
        return next(iter(self.params.values())).device

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._base, (params, buffers), (x,))

    def forward(self, x: torch.Tensor, train: bool, shared_input: bool = False) -> torch.Tensor:
        """Logits ``(N, B, classes)`` of ``x`` ``(N, B, ...)``, or ``(B, ...)`` if ``shared_input``."""
        self._base.train(train)
        in_dims = (0, 0, None if shared_input else 0)
        with autocast(x.device, self.precision):
            logits = vmap(self._call, in_dims=in_dims)(self.params, self.buffers, x)
        return logits if self.precision == "fp32" else logits.float()

    def train_epoch(
        self,
        optimizer: torch.optim.Optimizer,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        generators: Sequence[torch.Generator],
        augment: Augment | None = None,
        augment_generators: Sequence[torch.Generator] | None = None,
        per_network_images: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch for every network, network i as ``train_epoch`` with ``generators[i]`` (and
        ``augment_generators[i]``, default ``generators[i]``, for its augmentation).

        With ``per_network_images`` network i trains on ``images[i]`` (``images`` is ``(N, n,
        ...)``; the labels are shared), e.g. each replicate's own synthetic set in a batch of
        distillations.

        Returns the per-network mean loss and training accuracy of the epoch, two tensors of
        ``size`` values on the device (not read here, as in ``train_epoch``).
        """
        if len(generators) != self.size:
            raise ValueError(
                f"one generator per network is needed: {self.size} networks, "
                f"{len(generators)} generators"
            )
        n, device = len(labels), self.device
        # each network's permutation from its own generator, first, as the loop draws it
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])
        total_loss = torch.zeros(self.size, device=device)
        correct = torch.zeros(self.size, device=device, dtype=torch.long)
        for start in range(0, n, batch_size):
            batch = orders[:, start:start + batch_size]  # (N, B)
            x = (images[torch.arange(self.size).unsqueeze(1), batch] if per_network_images
                 else images[batch]).to(device, non_blocking=True)  # (N, B, C, H, W)
            y = labels[batch].to(device, non_blocking=True)  # (N, B)
            if augment is not None:
                draws = generators if augment_generators is None else augment_generators
                x = torch.stack([augment(x[i], g) for i, g in enumerate(draws)])
            logits = self.forward(x, train=True)  # (N, B, classes)
            per_net = F.cross_entropy(
                logits.flatten(0, 1), y.flatten(), reduction="none"
            ).view(self.size, -1).mean(1)
            optimizer.zero_grad(set_to_none=True)
            per_net.sum().backward()  # network i's gradient is that of its own mean loss
            optimizer.step()
            total_loss += per_net.detach() * y.shape[1]
            correct += (logits.argmax(-1) == y).sum(1)
        count = max(n, 1)
        return total_loss / count, correct / count

    @torch.no_grad()
    def accuracy(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None
    ) -> list[float]:
        """Top-1 accuracy of each network (evaluation mode) on ``images``.

        The test set is shared by the networks and read in chunks of ``batch_size // N`` images
        (``batch_size`` defaults to :func:`~ptmdd_helpers.networks.training.inference_batch_size`),
        so the activations held at once are about those of ``accuracy`` on one network.
        """
        chunk = max(1, (batch_size or inference_batch_size(self.device)) // self.size)
        correct = torch.zeros(self.size, dtype=torch.long, device=self.device)
        for start in range(0, len(labels), chunk):
            x = images[start:start + chunk].to(self.device, non_blocking=True)
            y = labels[start:start + chunk].to(self.device, non_blocking=True)
            logits = self.forward(x, train=False, shared_input=True)
            correct += (logits.argmax(-1) == y).sum(1)
        count = max(len(labels), 1)
        return [c / count for c in correct.tolist()]

    @torch.no_grad()
    def copy_to(self, models: Sequence[nn.Module]) -> None:
        """Write network i's current parameters and buffers into ``models[i]``."""
        if len(models) != self.size:
            raise ValueError(f"expected {self.size} models, got {len(models)}")
        for i, model in enumerate(models):
            for name, tensor in model.named_parameters():
                tensor.copy_(self.params[name][i])
            for name, tensor in model.named_buffers():
                tensor.copy_(self.buffers[name][i])


def ensemble_support(model: nn.Module, sample: torch.Tensor) -> str | None:
    """``None`` if N copies of ``model`` can be trained and tested under ``vmap``, else why not.

    ``sample`` is one input batch ``(B, ...)`` of the model's input shape. Two deep copies of
    ``model`` are run (training-mode forward and backward, evaluation-mode forward); ``model``
    itself is left untouched.
    """
    try:
        copies = [copy.deepcopy(model) for _ in range(2)]
        ensemble = Ensemble(copies)
        x = torch.stack([sample, sample]).to(ensemble.device)
        ensemble.forward(x, train=True).sum().backward()
        with torch.no_grad():
            ensemble.forward(sample.to(ensemble.device), train=False, shared_input=True)
    except Exception as error:  # any failure means: train this model in the loop
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{type(error).__name__}: {message}"[:300]
    return None
