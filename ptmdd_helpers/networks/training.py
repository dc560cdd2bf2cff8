"""The one supervised training loop, shared by PTM pools and evaluation: SGD, step decay, accuracy."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..seeding import derive_seed

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


# Arithmetic of the networks' forward passes: "fp32" throughout, or "bf16": convolutions and
# matmuls in bfloat16 under torch.autocast, while parameters, gradients, optimizer state and the
# loss stay float32 (mixed precision; opt-in, see benchmarks/README.md for speed and accuracy).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` in ``precision``'s dtype; no change for "fp32"."""
    check_precision(precision)
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class Autocast(nn.Module):
    """``module`` with its forward pass run under :func:`autocast`; returns float32 outputs."""

    def __init__(self, module: nn.Module, precision: str) -> None:
        super().__init__()
        check_precision(precision)
        self.module, self.precision = module, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, self.precision):
            return self.module(x).float()


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if autocast made it bfloat16 or float16, else unchanged (float64 stays)."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _float_inputs(module: nn.Module, args: tuple) -> tuple:
    return tuple(full_precision(a) if isinstance(a, torch.Tensor) else a for a in args)


def fp32_normalization(model: nn.Module) -> nn.Module:
    """Make ``model``'s normalization layers compute in float32 under a bf16 autocast (their
    inputs are cast up; autocast runs a norm in its input's dtype); returns ``model``."""
    for module in model.modules():
        if isinstance(module, _NORMS):  # float32 inputs: the norm runs in float32
            module.register_forward_pre_hook(_float_inputs)
    return model


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """``model`` itself for "fp32", else ``model`` wrapped in :class:`Autocast`."""
    check_precision(precision)
    return model if PRECISIONS[precision] is None else Autocast(model, precision)


@dataclass(frozen=True)
class TrainRecipe:
    """SGD hyper-parameters; the learning rate is multiplied by ``gamma`` at each milestone epoch."""

    epochs: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError(f"invalid training recipe {self}")


DEVICES = "auto, cpu, cuda, cuda:N (N a GPU index) or mps"
_DEVICE_NAME = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def check_device(device: object) -> None:
    """Raise ``ValueError`` unless ``device`` names a device (:data:`DEVICES`) or is a
    ``torch.device``; whether it is present here is checked by :func:`resolve_device`."""
    if isinstance(device, torch.device):
        return
    if not isinstance(device, str) or not _DEVICE_NAME.fullmatch(device):
        raise ValueError(f"unknown device {device!r}; --device (or device=) must be {DEVICES}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``auto`` to CUDA when available (else CPU); refuse a device that is not here.

    Unknown names raise ``ValueError`` listing the valid ones (:data:`DEVICES`).
    """
    check_device(device)
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device} was asked for, but torch sees no CUDA device "
                             "here; use --device cpu (or auto)")
        index, count = int(device.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"--device {device} was asked for, but torch sees {count} CUDA "
                             f"device(s) here (cuda:0 … cuda:{count - 1}); use one of those")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was asked for, but torch sees no MPS device here; "
                         "use --device cpu (or auto)")
    return torch.device(device)


def seeded_model(build: Callable[[], nn.Module], *seed_parts: object) -> nn.Module:
    """Call ``build`` with torch's global RNG seeded from ``seed_parts``, restoring it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(*seed_parts))
        return build()


def make_optimizer(
    model: nn.Module | Iterable[torch.Tensor], recipe: TrainRecipe
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR]:
    """Return the SGD optimizer and its step-decay scheduler for ``recipe``.

    ``model`` is a module or the tensors to train (e.g. an ensemble's stacked parameters).
    """
    params = model.parameters() if isinstance(model, nn.Module) else model
    optimizer = torch.optim.SGD(
        params, lr=recipe.lr, momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(recipe.milestones), gamma=recipe.gamma
    )
    return optimizer, scheduler


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    augment: Augment | None = None,
    augment_generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one epoch over shuffled mini-batches; return mean loss and training accuracy.

    ``generator`` draws the batch order; ``augment`` draws from ``augment_generator`` (default:
    ``generator``), so order and augmentation can be streams of their own.

    Both are 0-dim tensors on the model's device, not read here: reading one makes the host wait
    for the device, so callers read them only where they log.
    """
    model.train()
    device = next(model.parameters()).device
    order = torch.randperm(len(labels), generator=generator)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        x = images[batch].to(device, non_blocking=True)
        y = labels[batch].to(device, non_blocking=True)
        if augment is not None:
            x = augment(x, generator if augment_generator is None else augment_generator)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
    n = max(len(order), 1)
    return total_loss / n, correct / n


def inference_batch_size(device: torch.device | str) -> int:
    """Images per forward pass when testing: 256 on a CPU, 2048 elsewhere.

    On the 2-core test machine, testing ConvNet on 10000 FashionMNIST images took 13.2 s in
    batches of 2048 and 7.2 s in batches of 128 to 1024 (activations that stay in the caches).
    """
    return 256 if torch.device(device).type == "cpu" else 2048


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None
) -> float:
    """Return the top-1 accuracy of ``model`` (in eval mode) on ``images``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or inference_batch_size(device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].to(device, non_blocking=True)
        y = labels[start:start + batch_size].to(device, non_blocking=True)
        correct += (model(x).argmax(1) == y).sum()
    model.train(was_training)
    return int(correct) / max(len(labels), 1)  # the one read of the device
