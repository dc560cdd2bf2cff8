"""Diversity of a PTM pool, measured from data, and its correlation with a gain over pools.

Two measures over the test images of the pool's source (the first ``max_images``, no randomness):

* **disagreement**: mean over member pairs of the fraction of images on which the two members'
  predicted classes (argmax of the logits) differ; 0 for identical members, 1 when they never agree.
* **cka_distance**: mean over member pairs of 1 − linear CKA (Kornblith et al. 2019) of the two
  members' ``embed`` features (the flattened features before the last linear layer). Linear CKA is
  invariant to orthogonal transforms and isotropic scaling of either feature matrix and compares
  matrices of different widths, so pairs of different architectures are measured too.

A pool of one member has both measures 0.0 and 0 pairs. :func:`gain_correlation` gives Pearson's
r with its Fisher-z interval and Spearman's rho of paired gains against a diversity measure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..data.datasets import load_dataset
from ..networks.training import resolve_device
from .pool import load_pool

__all__ = ["gain_correlation", "linear_cka", "members_diversity", "pool_diversity"]

BATCH_SIZE = 256


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of feature matrices ``x`` (N, d1) and ``y`` (N, d2), computed in float64."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear CKA needs two (N, d) matrices with the same N, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if float(norms) == 0.0:  # a constant feature matrix carries no similarity structure
        return 0.0
    return float(cross / norms)


@torch.no_grad()
def _outputs(model: nn.Module, images: torch.Tensor, device: torch.device,
             batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and ``embed`` features (N, d) of ``model``, batch by batch, on CPU."""
    predictions, features = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        feature = model.embed(x)
        predictions.append(model.classifier(feature).argmax(dim=1).cpu())
        features.append(feature.double().cpu())
    return torch.cat(predictions), torch.cat(features)


def members_diversity(
    models: Sequence[nn.Module], images: torch.Tensor, *, device: str = "cpu",
    batch_size: int = BATCH_SIZE,
) -> dict:
    """Mean pairwise disagreement and mean pairwise 1 − linear CKA of ``models`` on ``images``."""
    if len(images) == 0:
        raise ValueError("diversity needs at least one image")
    target = resolve_device(device)
    outputs = [_outputs(model, images, target, batch_size) for model in models]
    pairs = list(itertools.combinations(range(len(outputs)), 2))
    if not pairs:
        return {"disagreement": 0.0, "cka_distance": 0.0, "pairs": 0, "images": len(images)}
    disagreement = [float((outputs[i][0] != outputs[j][0]).double().mean()) for i, j in pairs]
    distance = [1.0 - linear_cka(outputs[i][1], outputs[j][1]) for i, j in pairs]
    return {
        "disagreement": float(np.mean(disagreement)),
        "cka_distance": float(np.mean(distance)),
        "pairs": len(pairs),
        "images": len(images),
    }


def pool_diversity(
    source: str,
    archs: Sequence[str],
    n_models: int,
    epoch: int,
    *,
    pool_root: str | Path | None = None,
    data_root: str | Path | None = None,
    device: str = "cpu",
    max_images: int = 2000,
    pool_recipe: str | None = None,
) -> dict:
    """Diversity (disagreement, cka_distance, pairs, images) of a stored pool on its test images."""
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    pool = load_pool(source, archs, n_models, epoch, device, root=pool_root, identity=pool_recipe)
    models = [model for arch in archs for model in pool[arch]]
    images = load_dataset(source, data_root).test_images[:max_images]
    return members_diversity(models, images, device=device)


def gain_correlation(
    gains: Sequence[float], diversity: Sequence[float], confidence: float = 0.95
) -> dict:
    """Pearson r with its Fisher-z interval (n ≥ 4), Spearman rho and n of gains vs diversity."""
    x = np.asarray(diversity, dtype=float)
    y = np.asarray(gains, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"gains and diversity need the same length, got {y.shape} and {x.shape}")
    if len(x) < 2:
        raise ValueError(f"a correlation needs at least 2 pools, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("gains and diversity must be finite")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = len(x)
    if np.ptp(x) == 0.0 or np.ptp(y) == 0.0:  # a constant has no correlation
        return {"r": math.nan, "low": None, "high": None, "rho": math.nan, "n": n,
                "confidence": confidence}
    result = stats.pearsonr(x, y)
    r = float(result.statistic)
    low = high = None
    if n >= 4:
        if hasattr(result, "confidence_interval"):
            interval = result.confidence_interval(confidence_level=confidence)
            low, high = float(interval.low), float(interval.high)
        else:  # pragma: no cover - scipy < 1.9
            z = math.atanh(min(max(r, -1 + 1e-15), 1 - 1e-15))
            half = stats.norm.ppf(0.5 + confidence / 2) / math.sqrt(n - 3)
            low, high = math.tanh(z - half), math.tanh(z + half)
    rho = float(stats.spearmanr(x, y).statistic)
    return {"r": r, "low": low, "high": high, "rho": rho, "n": n, "confidence": confidence}
