"""Evaluation augmentations: the DC reference code's modes, and the choice among them and DSA.

The DC reference's evaluation augmentation (``get_daparam`` and ``augment`` of its ``utils.py``),
named modes of :data:`DC_AUGMENTS` (:func:`dc_augment`; not differentiable in the draws, applied
to the training batches of evaluation networks only). Per image, ONE op of the mode is chosen
uniformly and applied with parameters of ``DCAugConfig`` (crop 4, scale 0.2, rotate 45, noise 0.001):

* crop: integer shifts ``dy, dx`` in ``[-4, 4]``, zeros outside (pad 4 px, random crop of the
  original size; the DSA crop's gather). The reference drew offsets in ``[0, 8)``, shifts
  ``[-4, 3]``, and padded with the batch's channel means.
* scale: resize by ``fx, fy ~ U[0.8, 1.2]`` about the image centre, zeros outside;
* rotate: ``a ~ U[-45°, 45°]`` about the centre, zeros outside (the reference: integer degrees
  in ``[-45, 44]``, filled with the batch mean). Scale and rotate are one kornia
  ``get_affine_matrix2d`` + ``warp_affine`` (bilinear, ``align_corners=True``) per batch.
* noise: ``x + 0.001 * N(0, 1)``.

Every call draws the same numbers whatever the choices (choice, then each op's parameters for
every image, in ``ops`` order), so the streams stay aligned across conditions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import validation
from .augment import DSAConfig, _crop, _rand, _randint, augment_per_sample

DC_OPS: tuple[str, ...] = ("crop", "scale", "rotate", "noise")


@dataclass(frozen=True)
class DCAugConfig:
    """One DC-reference evaluation mode: its ops and the reference ``get_daparam`` values."""

    ops: tuple[str, ...]
    crop: int = 4  # pixels: shifts in [-crop, crop], zeros outside
    scale: float = 0.2  # per-axis resize factor in [1 - scale, 1 + scale]
    rotate: float = 45.0  # degrees: angle in [-rotate, rotate]
    noise: float = 0.001  # std of the additive Gaussian noise

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = [op for op in self.ops if op not in DC_OPS]
        if not self.ops or unknown:
            raise ValueError(f"DCAugConfig ops must be a non-empty subset of {list(DC_OPS)}, "
                             f"got {list(self.ops)}")


# the named modes (EvalProtocol.augment): the reference strategy strings
DC_AUGMENTS: dict[str, DCAugConfig] = {
    "crop_scale_rotate": DCAugConfig(ops=("crop", "scale", "rotate")),
    "crop_noise": DCAugConfig(ops=("crop", "noise")),
}
DC_MNIST_DATASETS = ("MNIST", "MNIST5k")  # the reference's MNIST, at 28x28 (not MNIST5k8)


def dc_reference_augment(dataset: str | None, arch: str | None) -> str | None:
    """The reference's DC evaluation mode for ``dataset`` and ``arch``, or ``None`` (no rule).

    ``crop_scale_rotate`` on MNIST (28x28: ``MNIST``, ``MNIST5k``, and their validation splits),
    ``crop_noise`` for ``ConvNetBN``; the ConvNetBN check comes second in ``get_daparam``, so it wins.
    """
    if arch == "ConvNetBN":
        return "crop_noise"
    if (validation.base_name(dataset or "") or dataset) in DC_MNIST_DATASETS:
        return "crop_scale_rotate"
    return None


def sample_dc_params(
    config: DCAugConfig, generator: torch.Generator, batch_size: int,
    image_shape: tuple[int, int, int],
) -> dict[str, torch.Tensor]:
    """Per image: ``choice`` (an index into ``config.ops``) and every op's parameters.

    The draws happen on ``generator.device``, always in the same order and number for a given
    config and batch (choice, then the parameters of each op for every image).
    """
    n = batch_size
    params = {"choice": _randint(generator, 0, len(config.ops), n)}
    for op in config.ops:
        if op == "crop":
            params["dy"] = _randint(generator, -config.crop, config.crop + 1, n)
            params["dx"] = _randint(generator, -config.crop, config.crop + 1, n)
        elif op == "scale":
            params["fx"] = 1 - config.scale + 2 * config.scale * _rand(generator, n)
            params["fy"] = 1 - config.scale + 2 * config.scale * _rand(generator, n)
        elif op == "rotate":
            params["angle"] = (2 * _rand(generator, n) - 1) * config.rotate  # degrees
        else:  # noise
            params["noise"] = config.noise * torch.randn(
                (n, *image_shape), generator=generator, device=generator.device)
    return params


def apply_dc_params(
    images: torch.Tensor, config: DCAugConfig, params: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Apply to each image of (N, C, H, W) ``images`` the op ``params["choice"]`` selects (out of place)."""
    from kornia.geometry.transform import get_affine_matrix2d, warp_affine  # on first use

    v = {k: t.to(images.device, non_blocking=True) for k, t in params.items()}
    chosen = {op: (v["choice"] == i).view(-1, 1, 1, 1) for i, op in enumerate(config.ops)}
    out = images
    if "crop" in chosen:
        out = torch.where(chosen["crop"], _crop(images, v["dy"], v["dx"]), out)
    if "scale" in chosen or "rotate" in chosen:
        n, _, height, width = images.shape
        one = torch.ones(n, device=images.device, dtype=images.dtype)
        scale = torch.stack([one, one], -1)
        angle = torch.zeros_like(one)
        if "scale" in chosen:
            factors = torch.stack([v["fx"], v["fy"]], -1).to(images.dtype)
            scale = torch.where(chosen["scale"].view(-1, 1), factors, scale)
        if "rotate" in chosen:
            angle = torch.where(chosen["rotate"].view(-1), v["angle"].to(images.dtype), angle)
        centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=images.device,
                              dtype=images.dtype).expand(n, 2)
        matrix = get_affine_matrix2d(torch.zeros_like(centre), centre, scale, angle)
        warped = warp_affine(images, matrix[:, :2], (height, width), mode="bilinear",
                             padding_mode="zeros", align_corners=True)
        affine = chosen.get("scale", False) | chosen.get("rotate", False)
        out = torch.where(affine, warped, out)
    if "noise" in chosen:
        out = torch.where(chosen["noise"], images + v["noise"].to(images.dtype), out)
    return out.contiguous()


def dc_augment(
    images: torch.Tensor, config: DCAugConfig, generator: torch.Generator
) -> torch.Tensor:
    """DC-reference evaluation augmentation: one op of ``config`` per image, drawn from ``generator``."""
    if images.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(images.shape)}")
    params = sample_dc_params(config, generator, images.shape[0], tuple(images.shape[1:]))
    return apply_dc_params(images, config, params)


EVAL_AUGMENTS: tuple[str, ...] = ("none", "dsa", *DC_AUGMENTS)


def eval_augmenter(
    mode: str, flip: bool = True
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """The per-sample callable of evaluation mode ``mode`` (``None`` for ``"none"``).

    ``"dsa"``: :func:`augment_per_sample` with the reference strategy, flip dropped unless
    ``flip``; a :data:`DC_AUGMENTS` name: :func:`dc_augment` with that mode.
    """
    if mode not in EVAL_AUGMENTS:
        raise ValueError(f"unknown augment {mode!r}; valid: {', '.join(EVAL_AUGMENTS)}")
    if mode == "none":
        return None
    if mode == "dsa":
        dsa = DSAConfig() if flip else DSAConfig().without_flip()
        return lambda x, generator: augment_per_sample(x, dsa, generator)
    config = DC_AUGMENTS[mode]
    return lambda x, generator: dc_augment(x, config, generator)
