"""Gradient-matching distances of DC: the study's layer-wise distance and alternatives.

See docs/method.md#dc-gradient-matching.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

METRICS = ("ours", "mse", "cos")


def layer_distance(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """Σ over output channels of 1 − cos(g_real, g_syn) for one parameter tensor; 0 for 1-D ones."""
    if g_real.dim() == 1:
        return g_real.new_zeros(())
    rows_real = g_real.reshape(g_real.shape[0], -1)
    rows_syn = g_syn.reshape(g_syn.shape[0], -1)
    cosine = (rows_real * rows_syn).sum(-1) / (
        rows_real.norm(dim=-1) * rows_syn.norm(dim=-1) + 1e-6
    )
    return (1 - cosine).sum()


def match_loss(
    grads_syn: Sequence[torch.Tensor], grads_real: Sequence[torch.Tensor], metric: str = "ours"
) -> torch.Tensor:
    """Distance between two gradient lists: ``ours`` (layer-wise), ``mse`` or one global ``cos``."""
    if metric == "ours":
        return sum(layer_distance(r, s) for r, s in zip(grads_real, grads_syn, strict=True))
    if metric == "mse":
        return sum(((s - r) ** 2).sum() for r, s in zip(grads_real, grads_syn, strict=True))
    if metric == "cos":
        real = torch.cat([g.reshape(-1) for g in grads_real])
        syn = torch.cat([g.reshape(-1) for g in grads_syn])
        return 1 - (real * syn).sum() / (real.norm() * syn.norm() + 1e-6)
    raise ValueError(f"unknown matching metric {metric!r}; valid: {', '.join(METRICS)}")


def matched_parameters(parameters: Sequence[torch.Tensor], metric: str) -> list[torch.Tensor]:
    """The parameters whose gradients the metric reads (``ours`` ignores 1-D tensors)."""
    if metric == "ours":
        return [p for p in parameters if p.dim() > 1]
    return list(parameters)


def match_loss_per_class(
    grads_syn: Sequence[torch.Tensor], grads_real: Sequence[torch.Tensor], metric: str = "ours"
) -> torch.Tensor:
    """:func:`match_loss` of every class at once: gradients shaped (C, *param), result (C,)."""
    pairs = list(zip(grads_real, grads_syn, strict=True))
    if metric == "ours":
        total = None
        for g_real, g_syn in pairs:
            if g_real.dim() == 2:  # 1-D parameters are ignored
                continue
            rows_real = g_real.reshape(*g_real.shape[:2], -1)
            rows_syn = g_syn.reshape(*g_syn.shape[:2], -1)
            cosine = (rows_real * rows_syn).sum(-1) / (
                rows_real.norm(dim=-1) * rows_syn.norm(dim=-1) + 1e-6
            )
            term = (1 - cosine).sum(-1)
            total = term if total is None else total + term
        return total if total is not None else grads_syn[0].new_zeros(grads_syn[0].shape[0])
    if metric == "mse":
        return sum(((s - r) ** 2).reshape(len(s), -1).sum(-1) for r, s in pairs)
    if metric == "cos":
        real = torch.cat([g.reshape(len(g), -1) for g in grads_real], dim=1)
        syn = torch.cat([g.reshape(len(g), -1) for g in grads_syn], dim=1)
        return 1 - (real * syn).sum(-1) / (real.norm(dim=-1) * syn.norm(dim=-1) + 1e-6)
    raise ValueError(f"unknown matching metric {metric!r}; valid: {', '.join(METRICS)}")
