"""Deterministic seeds derived from names and numbers, never from the clock."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """Return a 63-bit seed that depends only on ``parts`` (their ``repr``, in order)."""
    digest = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded with ``derive_seed(*parts)``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*parts))
    return generator
