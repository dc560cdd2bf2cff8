"""A small timm-style registry of the study's networks (:mod:`.networks` defines them).

``create_model(name, channels, num_classes, image_size)`` builds one of the names in
``list_models()``; ``register_model`` adds one (a factory ``fn(channels, num_classes, (h, w))``
and the smallest image side it works for). The networks, their layer-for-layer match with the
DatasetCondensation reference and the small-input rules are described in :mod:`.networks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from torch import nn

from .deep import VGG, ResNet
from .shallow import MLP, AlexNet, ConvNet, LeNet, Size

__all__ = [
    "register_model", "list_models", "create_model", "is_batchnorm_model",
]

ModelFactory = Callable[[int, int, Size], nn.Module]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Entry:
    factory: ModelFactory
    min_size: int


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    fn: ModelFactory | None = None, *, name: str | None = None, min_size: int = 1
) -> ModelFactory | Callable[[ModelFactory], ModelFactory]:
    """Register ``fn(channels, num_classes, (h, w)) -> nn.Module`` (as decorator or call)."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        key = name if name is not None else factory.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        if min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {min_size}")
        _REGISTRY[key] = _Entry(factory, min_size)
        return factory

    return decorate if fn is None else decorate(fn)


def list_models() -> list[str]:
    """Sorted names of all registered architectures."""
    return sorted(_REGISTRY)


def check_models(names: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` unless every entry of ``names`` is a registered architecture."""
    unknown = [arch for arch in names if arch not in list_models()]
    if unknown:
        raise ValueError(f"{name}: unknown model(s) {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(list_models())} (see: ptmdd models)")


def _as_size(image_size: int | Sequence[int]) -> Size:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return (image_size, image_size)
    if (
        isinstance(image_size, Sequence)
        and len(image_size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in image_size)
    ):
        return (image_size[0], image_size[1])
    raise ValueError(f"image_size must be an int or a pair of ints, got {image_size!r}")


def create_model(
    name: str, channels: int, num_classes: int, image_size: int | tuple[int, int]
) -> nn.Module:
    """Build the registered network ``name`` for ``channels``×H×W inputs and ``num_classes``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    entry = _REGISTRY[name]
    size = _as_size(image_size)
    if min(size) < entry.min_size:
        raise ValueError(
            f"image_size {size[0]}x{size[1]} is too small for {name}: the smallest size that "
            f"works is {entry.min_size}x{entry.min_size}"
        )
    if channels < 1 or num_classes < 1:
        raise ValueError(
            f"channels and num_classes must be >= 1, got channels={channels}, "
            f"num_classes={num_classes}"
        )
    model = entry.factory(channels, num_classes, size)
    model.arch = name
    return model


def is_batchnorm_model(model: nn.Module) -> bool:
    """True if ``model`` contains any BatchNorm layer (its output then depends on the batch)."""
    return any(isinstance(m, _BATCHNORMS) for m in model.modules())


def freeze_batchnorm(model: nn.Module) -> None:
    """Put ``model``'s BatchNorm layers in eval mode: they use their running statistics now."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _register_all() -> None:
    def reg(name: str, cls: type[nn.Module], **kwargs: object) -> None:
        register_model(partial(cls, **kwargs), name=name)

    reg("ConvNet", ConvNet)
    for width in (32, 64, 128, 256):
        reg(f"ConvNetW{width}", ConvNet, width=width)
    for depth in range(1, 7):
        reg(f"ConvNetD{depth}", ConvNet, depth=depth)
    for suffix, act in (("AS", "sigmoid"), ("AR", "relu"), ("AL", "leakyrelu"),
                        ("ASwish", "swish")):
        reg(f"ConvNet{suffix}", ConvNet, act=act)
    reg("ConvNetASwishBN", ConvNet, act="swish", norm="batchnorm")
    for suffix, norm in (("NN", "none"), ("BN", "batchnorm"), ("LN", "layernorm"),
                         ("IN", "instancenorm"), ("GN", "groupnorm")):
        reg(f"ConvNet{suffix}", ConvNet, norm=norm)
    for suffix, pooling in (("NP", "none"), ("MP", "maxpooling"), ("AP", "avgpooling")):
        reg(f"ConvNet{suffix}", ConvNet, pooling=pooling)
    reg("MLP", MLP)
    reg("LeNet", LeNet)
    reg("AlexNet", AlexNet)
    reg("AlexNetBN", AlexNet, batchnorm=True)
    reg("VGG11", VGG)
    reg("VGG11BN", VGG, norm="batchnorm")
    reg("ResNet18", ResNet)
    reg("ResNet18BN", ResNet, norm="batchnorm")
    reg("ResNet18BN_AP", ResNet, norm="batchnorm", ap=True)


_register_all()
