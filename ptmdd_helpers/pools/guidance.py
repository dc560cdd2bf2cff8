"""Guidance from frozen pre-trained models: CLoM and CCLoM (docs/method.md#the-ptm-loss-clom-and-cclom).

- CLoM: cross-entropy of a PTM's predictions on all synthetic images against their labels. The PTM
  must have been trained on the target's label space.
- CCLoM: with the PTM's feature extractor F, ``B`` real target images drawn uniformly from the
  training set, d_ij = 1 − cos(F(x_syn_i), F(x_real_j)) and M_ij = [y_syn_i = y_real_j], the loss is
  Σ M⊙d / Σ d. ``B`` defaults to 8196 (the authors' example) and is capped at the training-set size.

Per use, one architecture is drawn uniformly from the pool, then one of its members uniformly, both
from an explicit generator; α is one value or one per architecture (that of the drawn one applies).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_bool, check_int, check_names, is_number
from ..data.datasets import LoadedDataset, get_info
from ..networks.models import check_models
from .members import PAPER_POOL_RECIPE, UNTRAINED, recipe_identity
from .pool import load_pool

PAPER_POOL_IDENTITY = recipe_identity(PAPER_POOL_RECIPE)

DEFAULT_CCLOM_REAL_BATCH = 8196
KINDS = ("clom", "cclom")


@dataclass(frozen=True)
class GuidanceSpec:
    """Which pool guides the distillation, with which loss and weight."""

    kind: str  # "clom" or "cclom"
    source: str  # dataset the PTMs were trained on
    archs: tuple[str, ...] = ("ConvNet",)
    n_models: int = 1
    epoch: int = 150
    alphas: tuple[float, ...] = (100.0,)
    real_batch: int = DEFAULT_CCLOM_REAL_BATCH  # CCLoM only
    ptm_only: bool = False  # drop the DD loss: optimize α · L_PTM alone
    # which pool: the identity of the recipe its members were trained with (pools.members.recipe_identity;
    # "untrained" at epoch 0, set here); loading checks every member against it
    pool_recipe: str = PAPER_POOL_IDENTITY

    def __post_init__(self) -> None:
        check_guidance_values(self)
        if self.epoch == 0:  # the untrained initializations: no recipe made them
            object.__setattr__(self, "pool_recipe", UNTRAINED)

    def alpha_of(self, arch: str) -> float:
        """Return α for ``arch`` (the single α, or the one at the architecture's position)."""
        return self.alphas[0] if len(self.alphas) == 1 else self.alphas[self.archs.index(arch)]


def check_guidance_values(spec: GuidanceSpec) -> None:
    """Raise ``ValueError`` for a field of the wrong type or range (run at construction)."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown guidance {spec.kind!r}; GuidanceSpec kind must be one of "
                         f"{', '.join(KINDS)} (--clom or --cclom)")
    if not isinstance(spec.source, str) or not spec.source:
        raise ValueError(f"GuidanceSpec source must be the name of the PTMs' dataset (--source), "
                         f"got {spec.source!r}")
    check_names(spec.archs, "GuidanceSpec archs (the pool architectures)")
    check_int(spec.n_models, "GuidanceSpec n_models (members per architecture, --pool-size)",
              minimum=1)
    check_int(spec.epoch, "GuidanceSpec epoch (the PTM checkpoint, --pool-epoch)", minimum=0,
              fix="give 0 (the untrained initializations) or a positive epoch the pool has")
    if isinstance(spec.alphas, str) or not isinstance(spec.alphas, (list, tuple)) \
            or not spec.alphas or not all(map(is_number, spec.alphas)):
        raise ValueError(f"GuidanceSpec alphas must be a tuple of finite numbers, one α or one "
                         f"per pool architecture (--alphas), e.g. (100.0,); got {spec.alphas!r}")
    check_int(spec.real_batch, "GuidanceSpec real_batch (CCLoM's real images, --cclom-batch)",
              minimum=1)
    check_bool(spec.ptm_only, "GuidanceSpec ptm_only")
    if not isinstance(spec.pool_recipe, str) or not spec.pool_recipe:
        raise ValueError(f"GuidanceSpec pool_recipe must be a pool identity string "
                         f"(pools.members.recipe_identity), got {spec.pool_recipe!r}")


def check_real_batch(kind: str, real_batch: int | None) -> None:
    """Only CCLoM draws real images: a real batch given for another kind is an error."""
    if kind != "cclom" and real_batch is not None:
        raise ValueError(f"a CCLoM real batch ({real_batch}; --cclom-real-batch) was given for "
                         f"{kind}, which uses none; drop it, or use --cclom")


def make_guidance(
    kind: str, source: str, archs: Sequence[str], n_models: int, epoch: int,
    alphas: Sequence[float], *, real_batch: int | None = None, ptm_only: bool = False,
    pool_recipe: str = PAPER_POOL_IDENTITY,
) -> GuidanceSpec:
    """The one builder of a :class:`GuidanceSpec` (the CLI and the study): CCLoM's real batch
    defaults to :data:`DEFAULT_CCLOM_REAL_BATCH`; CLoM uses no real batch, so giving one with it
    is an error (it would otherwise give one experiment two run ids)."""
    check_real_batch(kind, real_batch)
    return GuidanceSpec(kind, source, tuple(archs), n_models, epoch,
                        tuple(float(a) for a in alphas),
                        DEFAULT_CCLOM_REAL_BATCH if real_batch is None else real_batch, ptm_only,
                        pool_recipe)


def validate_guidance(spec: GuidanceSpec, target: str) -> None:
    """Raise ``ValueError`` for an unusable guidance spec (kind, α count, label spaces, sizes)."""
    check_guidance_values(spec)
    check_models(spec.archs, "the guidance pool (--pool)")
    if len(spec.alphas) not in (1, len(spec.archs)):
        raise ValueError(
            f"{len(spec.alphas)} α values for {len(spec.archs)} pool architectures "
            f"({', '.join(spec.archs)}): give one α, or one per architecture"
        )
    if spec.epoch != 0 and spec.pool_recipe == UNTRAINED:
        raise ValueError(
            f"pool_recipe {UNTRAINED!r} names the untrained pool (epoch 0), but PTM epoch "
            f"{spec.epoch} was asked for: give the identity of its recipe (pools.members.recipe_identity)"
        )
    source, target_info = get_info(spec.source), get_info(target)
    if spec.kind == "clom" and (
        source.num_classes != target_info.num_classes or
        (source.class_names != target_info.class_names and spec.source != target)
    ):
        raise ValueError(
            f"CLoM needs PTMs trained on the target's label space, but {spec.source} "
            f"({source.num_classes} classes) is not {target} ({target_info.num_classes} classes); "
            f"use CCLoM (--cclom) for PTMs from another dataset"
        )
    if (source.channels, source.image_size) != (target_info.channels, target_info.image_size):
        raise ValueError(
            f"PTMs trained on {spec.source} expect {source.channels}×"
            f"{'×'.join(map(str, source.image_size))} images, but {target} has "
            f"{target_info.channels}×{'×'.join(map(str, target_info.image_size))}"
        )


class Guidance:
    """A loaded pool and the loss it adds; call :meth:`loss` once per use."""

    def __init__(
        self,
        spec: GuidanceSpec,
        data: LoadedDataset,
        *,
        device: torch.device | str = "cpu",
        pool_root: str | Path | None = None,
    ) -> None:
        validate_guidance(spec, data.info.name)
        self.spec = spec
        self.data = data
        self.device = torch.device(device)
        self.pool: dict[str, list[nn.Module]] = load_pool(
            spec.source, spec.archs, spec.n_models, spec.epoch, self.device, root=pool_root,
            identity=spec.pool_recipe,
        )
        self.real_batch = min(spec.real_batch, len(data.train_labels))

    def draw(self, generator: torch.Generator) -> tuple[str, nn.Module]:
        """Draw an architecture uniformly, then one of its members uniformly."""
        arch = self.spec.archs[int(torch.randint(len(self.spec.archs), (), generator=generator))]
        members = self.pool[arch]
        return arch, members[int(torch.randint(len(members), (), generator=generator))]

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Return α · L_PTM for the synthetic ``images`` with one PTM drawn from ``generator``."""
        arch, model = self.draw(generator)
        if self.spec.kind == "clom":
            value = clom_loss(model, images, labels)
        else:
            chosen = torch.randperm(len(self.data.train_labels), generator=generator)
            chosen = chosen[: self.real_batch]
            real = self.data.train_images[chosen].to(self.device)
            real_labels = self.data.train_labels[chosen].to(self.device)
            value = cclom_loss(model, images, labels, real, real_labels)
        return self.spec.alpha_of(arch) * value


def clom_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the frozen ``model`` on the synthetic images against their labels."""
    return F.cross_entropy(model(images), labels)


def cclom_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    real_images: torch.Tensor,
    real_labels: torch.Tensor,
    chunk: int = 2048,
) -> torch.Tensor:
    """Contrastive feature loss Σ M⊙d / Σ d with cosine distances to real-image features."""
    with torch.no_grad():
        real_features = torch.cat(
            [model.embed(real_images[i:i + chunk]) for i in range(0, len(real_images), chunk)]
        )
    syn = F.normalize(model.embed(images), dim=1)
    real = F.normalize(real_features, dim=1)
    distance = 1 - syn @ real.T
    mask = (labels.view(-1, 1) == real_labels.view(1, -1)).to(distance.dtype)
    return (mask * distance).sum() / distance.sum()


def parse_alphas(text: str | Sequence[float], name: str = "--alphas") -> tuple[float, ...]:
    """Parse ``"100"`` or ``"5000,5000,100"`` into a tuple of floats; else ``ValueError``
    (``name`` names the option or argument in its message)."""
    parts = ([part.strip() for part in text.split(",") if part.strip()]
             if isinstance(text, str) else text)
    try:
        alphas = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        alphas = ()
    if not alphas or isinstance(text, bool) or not all(map(math.isfinite, alphas)) or any(
            isinstance(part, bool) for part in parts):
        raise ValueError(
            f"{name} expects a number or comma-separated numbers, one per pool architecture "
            f"(e.g. 100 or 5000,5000,100); got {text!r}"
        )
    return alphas
