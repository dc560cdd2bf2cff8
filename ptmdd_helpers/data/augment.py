"""Differentiable Siamese Augmentation (DSA) of Zhao & Bilen, with explicit generators.

One operation is chosen uniformly per call from ``DSAConfig.ops`` (the reference strategy
``color_crop_cutout_flip_scale_rotate``, single-op mode ``'S'``), and its parameters are drawn from
an explicit ``torch.Generator``; the global RNG is never touched.

* Shared mode (``siamese_augment``; DSA and DM distillation): ONE parameter value is drawn per call
  and applied identically to every batch, whatever its size; the number of draws does not depend
  on the batch sizes. The reference drew a row per sample and overwrote all rows with the first by
  a self-overlapping in-place write, which torch 2.x rejects; here the single value is broadcast
  out of place.
* Per-sample mode (``augment_per_sample``; evaluation training with DSA): one op per call, as in the
  reference, with independent parameters per image.

Draws happen on the generator's device (a CPU generator draws on the CPU); the drawn values are
moved to the images' device in ``apply_params``. Every transform is differentiable w.r.t. the
images.

Formulas (reference ``ParamDiffAug`` values in ``DSAConfig``; ``r ~ U[0, 1)``):

* color: brightness ``x + (r - 0.5) * 1.0``, then saturation ``(x - mean_C) * (2 r) + mean_C``,
  then contrast ``(x - mean_CHW) * (r + 0.5) + mean_CHW``, each with its own ``r``.
* crop: integer shifts ``dy, dx`` in ``[-s, s]``, ``s = int(0.125 * size + 0.5)``,
  ``out[i, j] = x[i + dy, j + dx]``, zero outside.
* cutout: a square of side ``int(0.5 * size + 0.5)`` centred at a random pixel is zeroed
  (clipped at the borders).
* flip: horizontal with probability 0.5.
* scale / rotate: ``affine_grid`` + ``grid_sample`` (bilinear, zero padding, ``align_corners=True``
  as the reference ran) with ``theta = [[sx, 0, 0], [0, sy, 0]]``, ``sx, sy ~ U[1/1.2, 1.2]``, or
  ``theta = [[cos a, -sin a, 0], [sin a, cos a, 0]]``, ``a ~ U[-15°, 15°]``.

kornia is used for the horizontal flip only: its warps reproduce the reference's affine sampling
only approximately, its ``enhance`` functions clamp to [0, 1] and use other formulas (HSV
saturation, grey-level contrast mean) that do not suit normalised images, and its translation is
a bilinear warp rather than an exact integer shift; those ops are written with plain torch.

The evaluation augmentations of the DC reference code are in :mod:`.eval_augment`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

OPS: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
FLIP_PROBABILITY = 0.5


def _check_ops(ops: Sequence[str]) -> None:
    """Raise ``ValueError`` for unknown op names, listing the valid ones."""
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown DSA op(s) {unknown}; valid ops are {list(OPS)}")


@dataclass(frozen=True)
class DSAConfig:
    """The ops to choose from and the reference ranges of their parameters."""

    ops: tuple[str, ...] = OPS
    scale_ratio: float = 1.2
    rotate_degrees: float = 15.0
    crop_ratio: float = 0.125
    cutout_ratio: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.ops:
            raise ValueError(f"DSAConfig needs at least one op; valid ops are {list(OPS)}")
        _check_ops(self.ops)

    @classmethod
    def from_strategy(cls, strategy: str, **kwargs: float) -> DSAConfig:
        """Build a config from a reference strategy string such as ``'color_crop_cutout'``."""
        return cls(ops=tuple(strategy.split("_")), **kwargs)

    def without_flip(self) -> DSAConfig:
        """The same config with the flip op removed (digit datasets)."""
        return replace(self, ops=tuple(op for op in self.ops if op != "flip"))


@dataclass(frozen=True)
class DSAParams:
    """One op and its drawn parameters: tensors of leading size 1 (shared) or N (per sample)."""

    op: str
    values: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """Leading size of the parameter tensors (1 means shared by every image)."""
        return next(iter(self.values.values())).shape[0] if self.values else 1


def _rand(generator: torch.Generator, n: int) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device)


def _randint(generator: torch.Generator, low: int, high: int, n: int) -> torch.Tensor:
    return torch.randint(low, high, (n,), generator=generator, device=generator.device)


def sample_params(
    config: DSAConfig,
    generator: torch.Generator,
    batch_size: int = 1,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    device: torch.device | str | None = None,
) -> DSAParams:
    """Choose one op uniformly and draw its parameters: batch_size=1 means shared across any batch.

    Draws happen on ``generator.device``; the values are then moved to ``device`` if given
    (otherwise they stay there and ``apply_params`` moves them to the images' device).
    ``image_shape`` is the (C, H, W) of the images to transform (crop and cutout ranges depend on
    H and W).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_ops(config.ops)
    height, width = int(image_shape[-2]), int(image_shape[-1])
    index = int(_randint(generator, 0, len(config.ops), 1).item())
    op = config.ops[index]
    n = batch_size
    values: dict[str, torch.Tensor]
    if op == "color":
        brightness = (_rand(generator, n) - 0.5) * config.brightness
        saturation = _rand(generator, n) * config.saturation
        contrast = _rand(generator, n) + config.contrast
        values = {"brightness": brightness, "saturation": saturation, "contrast": contrast}
    elif op == "crop":
        shift_h = int(height * config.crop_ratio + 0.5)
        shift_w = int(width * config.crop_ratio + 0.5)
        values = {
            "dy": _randint(generator, -shift_h, shift_h + 1, n),
            "dx": _randint(generator, -shift_w, shift_w + 1, n),
        }
    elif op == "cutout":
        size_h = int(height * config.cutout_ratio + 0.5)
        size_w = int(width * config.cutout_ratio + 0.5)
        # Reference: centre in [0, size + (1 - side % 2)), square starts at centre - side // 2.
        centre_y = _randint(generator, 0, height + (1 - size_h % 2), n)
        centre_x = _randint(generator, 0, width + (1 - size_w % 2), n)
        top, left = centre_y - size_h // 2, centre_x - size_w // 2
        values = {"top": top, "bottom": top + size_h, "left": left, "right": left + size_w}
    elif op == "flip":
        values = {"flip": _rand(generator, n) < FLIP_PROBABILITY}
    elif op == "scale":
        ratio = config.scale_ratio
        values = {
            "sx": _rand(generator, n) * (ratio - 1.0 / ratio) + 1.0 / ratio,
            "sy": _rand(generator, n) * (ratio - 1.0 / ratio) + 1.0 / ratio,
        }
    else:  # rotate
        values = {"angle": (_rand(generator, n) - 0.5) * 2 * config.rotate_degrees / 180 * math.pi}
    if device is not None:
        values = {k: v.to(device) for k, v in values.items()}
    return DSAParams(op, values)


def _column(v: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """A per-image value as an (B, 1, 1, 1) tensor of the images' dtype."""
    return v.to(dtype=images.dtype).view(-1, 1, 1, 1)


def _affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Sample ``images`` on ``affine_grid(theta)`` (output -> input, normalised coordinates)."""
    theta = theta.expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _crop(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """``out[i, j] = x[i + dy, j + dx]`` with zeros outside (exact integer shift, gather based)."""
    n, _, height, width = images.shape
    rows = torch.arange(height, device=images.device) + dy.view(-1, 1)  # (B, H)
    cols = torch.arange(width, device=images.device) + dx.view(-1, 1)  # (B, W)
    padded = F.pad(images, [1, 1, 1, 1])
    rows = (rows + 1).clamp(0, height + 1).expand(n, height)
    cols = (cols + 1).clamp(0, width + 1).expand(n, width)
    batch = torch.arange(n, device=images.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, height, 1), cols.view(n, 1, width)]
    return out.permute(0, 3, 1, 2)


def apply_params(images: torch.Tensor, params: DSAParams) -> torch.Tensor:
    """Apply differentiably to (N,C,H,W) images; leading size 1 is shared, else it must equal N."""
    from kornia.geometry.transform import hflip  # kornia is imported when first used

    if images.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(images.shape)}")
    _check_ops([params.op])
    n = images.shape[0]
    if params.batch_size not in (1, n):
        raise ValueError(
            f"parameters for {params.batch_size} images cannot apply to a batch of {n}"
        )
    v = {k: t.to(images.device, non_blocking=True) for k, t in params.values.items()}
    x = images
    if params.op == "color":
        x = x + _column(v["brightness"], x)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * _column(v["saturation"], x) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * _column(v["contrast"], x) + mean
    elif params.op == "crop":
        x = _crop(x, v["dy"], v["dx"])
    elif params.op == "cutout":
        height, width = x.shape[-2:]
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        in_rows = (rows >= v["top"].view(-1, 1)) & (rows < v["bottom"].view(-1, 1))  # (B, H)
        in_cols = (cols >= v["left"].view(-1, 1)) & (cols < v["right"].view(-1, 1))  # (B, W)
        mask = ~(in_rows[:, :, None] & in_cols[:, None, :])
        x = x * mask.unsqueeze(1).to(x.dtype)
    elif params.op == "flip":
        x = torch.where(v["flip"].view(-1, 1, 1, 1), hflip(x), x)
    elif params.op == "scale":
        sx, sy = v["sx"].to(x.dtype), v["sy"].to(x.dtype)
        zero = torch.zeros_like(sx)
        rows = [torch.stack([sx, zero, zero], -1), torch.stack([zero, sy, zero], -1)]
        theta = torch.stack(rows, 1)
        x = _affine(x, theta)
    else:  # rotate
        angle = v["angle"].to(x.dtype)
        cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
        rows = [torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)]
        theta = torch.stack(rows, 1)
        x = _affine(x, theta)
    return x.contiguous()


def siamese_augment(
    batches: Sequence[torch.Tensor], config: DSAConfig, generator: torch.Generator
) -> list[torch.Tensor]:
    """Draw one shared parameter set and apply it identically to every batch (sizes may differ)."""
    if not batches:
        return []
    shape = tuple(batches[0].shape[1:])
    for b in batches:
        if b.ndim != 4 or tuple(b.shape[-2:]) != shape[-2:]:
            shapes = [tuple(b.shape) for b in batches]
            raise ValueError(f"siamese batches need 4-D tensors of equal (H, W); got {shapes}")
    params = sample_params(config, generator, batch_size=1, image_shape=shape)
    return [apply_params(b, params) for b in batches]


def augment_per_sample(
    images: torch.Tensor, config: DSAConfig, generator: torch.Generator
) -> torch.Tensor:
    """Evaluation-time DSA: one op per call (as in the original), independent params per image."""
    if images.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(images.shape)}")
    params = sample_params(config, generator, batch_size=images.shape[0],
                           image_shape=tuple(images.shape[1:]))
    return apply_params(images, params)
