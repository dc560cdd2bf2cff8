"""The deeper DC networks: VGG11(BN) and ResNet18 (instance norm, BN, and the DC ``_AP`` variant),
built from the blocks of :mod:`.networks` by the same rules (see its docstring for the reference
layouts, small inputs and the deliberate departures); :mod:`.models` registers them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .shallow import ImageClassifier, Size, conv_side, norm_layer, pool2

__all__ = ["ResNet", "VGG"]


_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(ImageClassifier):
    """DC VGG11: 3×3 conv/norm/ReLU stages with max-pools, identity avg-pool, linear classifier."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: Size,
        norm: str = "instancenorm",
        cfg: Sequence[int | str] = _VGG11,
    ) -> None:
        super().__init__(channels, num_classes, image_size)
        height, wide = image_size
        layers: list[nn.Module] = []
        in_channels = channels
        for index, item in enumerate(cfg):
            if item == "M":
                pool, height, wide = pool2("maxpooling", height, wide)
                layers.append(pool)
                continue
            out_channels = int(item)
            padding = 3 if channels == 1 and index == 0 else 1  # the reference's 28 -> 32 quirk
            height, wide = conv_side(height, 3, padding), conv_side(wide, 3, padding)
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=padding),
                norm_layer(norm, out_channels, height, wide),
                nn.ReLU(),
            ]
            in_channels = out_channels
        layers.append(nn.AvgPool2d(kernel_size=1, stride=1))  # identity, kept as in the reference
        self.features = nn.Sequential(*layers)
        self.feature_dim = in_channels * height * wide
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.features(x), 1)


class BasicBlock(nn.Module):
    """ResNet basic block; ``avgpool_downsample`` gives DC's ``_AP`` variant (conv + AvgPool2d)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        norm: str,
        size: Size,
        avgpool_downsample: bool = False,
    ) -> None:
        super().__init__()
        height, wide = size
        pool: nn.Module = nn.Identity()
        if avgpool_downsample:
            self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=1, padding=1,
                                   bias=False)
            if stride != 1:
                pool, height, wide = pool2("avgpooling", height, wide)
        else:
            self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1,
                                   bias=False)
            height, wide = conv_side(height, 3, 1, stride), conv_side(wide, 3, 1, stride)
        self.bn1 = norm_layer(norm, planes, height, wide)
        self.pool = pool  # identity unless this is a down-sampling _AP block
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(norm, planes, height, wide)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if avgpool_downsample:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, kernel_size=1, stride=1, bias=False),
                    pool2("avgpooling", *size)[0] if stride != 1 else nn.Identity(),
                    norm_layer(norm, planes, height, wide),
                )
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                    norm_layer(norm, planes, height, wide),
                )
        self.out_size: Size = (height, wide)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output ``relu(bn2(conv2(...)) + shortcut(x))``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.pool(out)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(ImageClassifier):
    """CIFAR-style ResNet18 (3×3 stem, no max-pool); ``ap=True`` is DC's ResNet18BN_AP."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: Size,
        norm: str = "instancenorm",
        ap: bool = False,
        num_blocks: Sequence[int] = (2, 2, 2, 2),
    ) -> None:
        super().__init__(channels, num_classes, image_size)
        self.ap = ap
        size = image_size
        self.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(norm, 64, *size)
        in_planes = 64
        stages = []
        for planes, blocks, first_stride in zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2),
                                                strict=True):
            stage = []
            for stride in [first_stride] + [1] * (blocks - 1):
                block = BasicBlock(in_planes, planes, stride, norm, size, avgpool_downsample=ap)
                size = block.out_size
                stage.append(block)
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        # ResNet18(BN): average-pool to 1×1; the _AP variant keeps the whole h×w map (reference)
        self.pool: nn.Module = nn.Identity() if ap else nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_planes * (size[0] * size[1] if ap else 1)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(self.pool(out), 1)
