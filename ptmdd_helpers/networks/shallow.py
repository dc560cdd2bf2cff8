"""The DC/DSA/DM networks (Zhao & Bilen) used in the study; :mod:`.models` registers them.

:func:`~ptmdd_helpers.networks.models.create_model` builds one of the names in
:func:`~ptmdd_helpers.networks.models.list_models`: the ConvNet family (width, depth, activation,
normalization and pooling variants), MLP, LeNet, AlexNet(BN) here, VGG11(BN) and ResNet18 (instance
norm, BN, and the DC ``_AP`` variant) in :mod:`.networks_deep`. At 32×32 (any channel count) and at
1×28×28 the networks are layer for layer the reference ones of the DatasetCondensation repository:
same layers, same shapes, same parameter names (``features``/``classifier``, ``fc_1``…,
``layer1``…), including the MNIST quirk that pads the first 3×3 conv of 1-channel ConvNet/VGG by 3
(and the first 5×5 conv of 1-channel AlexNet by 4, of LeNet by 2), which maps 28×28 to 32×32.

"Instance norm" is ``nn.GroupNorm(C, C, affine=True)``, as in the reference. Every model has
``embed(x)`` (the flattened features right before the last linear layer, shape
``(N, model.feature_dim)``), ``classifier`` (that last layer), ``forward(x) ==
classifier(embed(x))``, ``feature_dim`` and ``num_classes``. Features are flattened with
``flatten`` (never ``.view``), so non-contiguous and ``channels_last`` inputs work, and no
activation is modified in place, so ``torch.func.functional_call``/``vmap`` over stacked
parameters work.

Small inputs. Feature sizes are computed by construction, for any ``image_size``; two rules,
which only change a network where the reference one would raise, let small inputs through:

1. A 2×2 down-sampling stage (max/avg pooling, and the ``AvgPool2d(2)`` of ResNet18BN_AP) is
   skipped along a spatial side that it would take below 1 (a side of 1 stays 1); when both
   sides are 1 the stage becomes ``nn.Identity``. A stride-2 3×3 conv (padding 1) maps a side
   ``n`` to ``ceil(n / 2) >= 1`` and so never needs skipping.
2. An unpadded ("valid") conv whose input side is smaller than its kernel (only LeNet has
   such convs) gets the "same" padding ``kernel // 2`` along that side.

With these rules every registered model works from 1×1 upwards (rectangular sizes too), so
only ``image_size < 1`` is refused; ``register_model(..., min_size=k)`` lets a future model
declare a larger smallest size, and ``create_model`` then refuses smaller inputs with a
``ValueError`` naming it. A tensor whose trailing ``(C, H, W)`` differs from what the model was
built for is refused by ``embed``/``forward`` with a ``ValueError``.

Deliberate departures from the reference code: ResNet18/ResNet18BN pool to 1×1 adaptively
(the reference's ``avg_pool2d(·, 4)`` is the same at 28×28 and 32×32); ResNet18BN_AP keeps the
reference's identity final pooling, so its ``feature_dim`` is ``512·h·w`` (8192 at 32×32; 4608
at 1×28×28, where the reference's hard-coded classifier size is wrong for 3×3 maps); ReLUs are
not in place; ConvNetD5/D6 (the reference stops at D4) follow the same recipe, so at 32×32 the
sixth pooling of ConvNetD6 is skipped by rule 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AlexNet", "ConvNet", "ImageClassifier", "LeNet", "MLP", "Size", "conv_side", "norm_layer",
           "pool2"]

Size = tuple[int, int]

# --------------------------------------------------------------------------- building blocks


class Swish(nn.Module):
    """Swish activation ``x * sigmoid(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``x * sigmoid(x)``."""
        return x * torch.sigmoid(x)


def _activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()  # not in place: in-place ops on activations break functorch transforms
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.01)
    if kind == "swish":
        return Swish()
    raise ValueError(f"unknown activation {kind!r}")


def norm_layer(kind: str, channels: int, height: int, width: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layernorm":
        return nn.LayerNorm([channels, height, width], elementwise_affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    raise ValueError(f"unknown normalization {kind!r}")


def pool2(kind: str, height: int, width: int) -> tuple[nn.Module, int, int]:
    """A 2×2/stride-2 pooling stage and its output size, skipped along sides of 1 (rule 1)."""
    kh, kw = (2 if height >= 2 else 1), (2 if width >= 2 else 1)
    if kh == kw == 1:
        return nn.Identity(), height, width
    kernel: int | Size = 2 if kh == kw == 2 else (kh, kw)
    if kind == "maxpooling":
        module: nn.Module = nn.MaxPool2d(kernel_size=kernel, stride=kernel)
    elif kind == "avgpooling":
        module = nn.AvgPool2d(kernel_size=kernel, stride=kernel)
    else:
        raise ValueError(f"unknown pooling {kind!r}")
    return module, height // kh, width // kw


def conv_side(side: int, kernel: int, padding: int, stride: int = 1) -> int:
    return (side + 2 * padding - kernel) // stride + 1


def _valid_padding(height: int, width: int, kernel: int) -> int | Size:
    """Padding of an unpadded conv: "same" padding along sides smaller than the kernel (rule 2)."""
    ph, pw = (kernel // 2 if height < kernel else 0), (kernel // 2 if width < kernel else 0)
    return ph if ph == pw else (ph, pw)


def _pair(padding: int | Size) -> Size:
    return (padding, padding) if isinstance(padding, int) else padding


# --------------------------------------------------------------------------- base class


class ImageClassifier(nn.Module):
    """Base class: fixed input shape ``(C, H, W)``, ``embed`` + last linear layer ``classifier``."""

    classifier: nn.Module

    def __init__(self, channels: int, num_classes: int, image_size: Size) -> None:
        super().__init__()
        self.channels = channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.feature_dim = 0  # set by subclasses once the feature extractor is built

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, C, H, W)`` with the built-for ``C, H, W``."""
        # only logical shapes are read: this works unchanged under torch.func.vmap
        expected = (self.channels, *self.image_size)
        if x.dim() != 4 or tuple(x.shape[-3:]) != expected:
            raise ValueError(
                f"{type(self).__name__} was built for inputs of shape (N, {expected[0]}, "
                f"{expected[1]}, {expected[2]}), got a tensor of shape {tuple(x.shape)}"
            )

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened features right before the last linear layer, shape ``(N, feature_dim)``."""
        self.check_input(x)
        return self._embed(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``classifier(embed(x))``, shape ``(N, num_classes)``."""
        return self.classifier(self.embed(x))


# --------------------------------------------------------------------------- networks


class ConvNet(ImageClassifier):
    """DC ConvNet: ``depth`` × [3×3 conv, norm, activation, 2×2 pooling], then a linear layer."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: Size,
        width: int = 128,
        depth: int = 3,
        act: str = "relu",
        norm: str = "instancenorm",
        pooling: str = "avgpooling",
    ) -> None:
        super().__init__(channels, num_classes, image_size)
        height, wide = image_size
        layers: list[nn.Module] = []
        in_channels = channels
        for d in range(depth):
            padding = 3 if channels == 1 and d == 0 else 1  # the reference's 28 -> 32 quirk
            layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=padding))
            height, wide = conv_side(height, 3, padding), conv_side(wide, 3, padding)
            if norm != "none":
                layers.append(norm_layer(norm, width, height, wide))
            layers.append(_activation(act))
            if pooling != "none":
                pool, height, wide = pool2(pooling, height, wide)
                layers.append(pool)
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * height * wide
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.features(x), 1)


class MLP(ImageClassifier):
    """DC MLP: flatten, two 128-unit ReLU layers, linear classifier."""

    def __init__(self, channels: int, num_classes: int, image_size: Size) -> None:
        super().__init__(channels, num_classes, image_size)
        self.fc_1 = nn.Linear(channels * image_size[0] * image_size[1], 128)
        self.fc_2 = nn.Linear(128, 128)
        self.fc_3 = nn.Linear(128, num_classes)
        self.feature_dim = 128

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        """The last linear layer (``fc_3``)."""
        return self.fc_3

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.fc_1(torch.flatten(x, 1)))
        return F.relu(self.fc_2(out))


class LeNet(ImageClassifier):
    """DC LeNet: two 5×5 conv/ReLU/max-pool stages, then 120-84 ReLU layers and a classifier."""

    def __init__(self, channels: int, num_classes: int, image_size: Size) -> None:
        super().__init__(channels, num_classes, image_size)
        height, wide = image_size
        layers: list[nn.Module] = []
        in_channels = channels
        for index, out_channels in enumerate((6, 16)):
            padding = 2 if index == 0 and channels == 1 else _valid_padding(height, wide, 5)
            ph, pw = _pair(padding)
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=padding))
            height, wide = conv_side(height, 5, ph), conv_side(wide, 5, pw)
            layers.append(nn.ReLU())
            pool, height, wide = pool2("maxpooling", height, wide)
            layers.append(pool)
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.fc_1 = nn.Linear(16 * height * wide, 120)
        self.fc_2 = nn.Linear(120, 84)
        self.fc_3 = nn.Linear(84, num_classes)
        self.feature_dim = 84

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        """The last linear layer (``fc_3``)."""
        return self.fc_3

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.flatten(self.features(x), 1)
        return F.relu(self.fc_2(F.relu(self.fc_1(out))))


class AlexNet(ImageClassifier):
    """DC AlexNet (5 convs, 3 max-pools); ``batchnorm=True`` adds BatchNorm2d after each conv."""

    # (out_channels, kernel, padding, pool after) of the five convs
    _CFG = ((128, 5, 2, True), (192, 5, 2, True), (256, 3, 1, False), (192, 3, 1, False),
            (192, 3, 1, True))

    def __init__(
        self, channels: int, num_classes: int, image_size: Size, batchnorm: bool = False
    ) -> None:
        super().__init__(channels, num_classes, image_size)
        height, wide = image_size
        layers: list[nn.Module] = []
        in_channels = channels
        for index, (out_channels, kernel, padding, pool_after) in enumerate(self._CFG):
            if index == 0 and channels == 1:
                padding = 4  # the reference's 28 -> 32 quirk
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=kernel,
                                    padding=padding))
            height, wide = conv_side(height, kernel, padding), conv_side(wide, kernel, padding)
            if batchnorm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU())
            if pool_after:
                pool, height, wide = pool2("maxpooling", height, wide)
                layers.append(pool)
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.feature_dim = in_channels * height * wide
        self.fc = nn.Linear(self.feature_dim, num_classes)

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        """The last linear layer (``fc``)."""
        return self.fc

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.features(x), 1)
