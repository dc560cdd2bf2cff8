"""Several training sets of one shape evaluated together: the networks of every set trained as one
``vmap`` ensemble, each on its own set (``evaluate_sets``).

Network ``net`` of set ``s`` is seeded by ``network_seed_parts(seed_parts_s, net)`` and the
architecture, exactly as :func:`~.evaluate.evaluate_images` seeds it for that set alone, so a set's
rows equal those of its evaluation alone up to the float arithmetic of the ensemble's batched
kernels (``tests/test_replicas.py``). On a GPU this fills the card with the many small networks of
a grid; on a CPU the loop is faster (``benchmarks/README.md``), which is why the study packs
evaluations only where it packs distillations (``study.packing``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..checks import check_eval_nets
from ..data.datasets import LoadedDataset
from ..networks.training import resolve_device
from .evaluate import ensemble_fallback_reason, train_and_test_ensemble
from .protocol import EvalProtocol
from .training_sets import check_archs, check_training_set, network_seed_parts


def evaluate_sets(
    sets: Sequence[tuple[torch.Tensor, torch.Tensor, tuple]],
    data: LoadedDataset,
    arch: str,
    n_nets: int,
    protocol: EvalProtocol,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[list[dict]]:
    """Train and test ``n_nets`` fresh ``arch`` networks on each ``(images, labels, seed_parts)``
    of ``sets``, all as one ensemble; per set, its rows as :func:`~.evaluate.evaluate_images`
    returns them. The sets must have the same shape and the same labels (the sets of one grid
    at one IPC have: class by class)."""
    check_archs([arch])
    check_eval_nets(n_nets, "evaluate_sets n_nets (evaluation networks per set)")
    if not sets:
        return []
    for images, labels, _ in sets:
        check_training_set(images, labels, data)
    first_images, first_labels, _ = sets[0]
    if any(images.shape != first_images.shape or not torch.equal(labels, first_labels)
           for images, labels, _ in sets):
        raise ValueError("evaluate_sets: the training sets must have one shape and the same labels "
                         "(evaluate others with evaluate_images, one set at a time)")
    reason = ensemble_fallback_reason(arch, data)
    if reason is not None:
        raise ValueError(f"evaluate_sets: {arch} cannot be trained as a vmap ensemble ({reason}); "
                         "evaluate its sets with evaluate_images")
    device = resolve_device(device)
    images = torch.stack([images.detach() for images, _, _ in sets
                          for _ in range(n_nets)]).to(device)
    seed_parts = [network_seed_parts(tuple(parts), net) for _, _, parts in sets
                  for net in range(n_nets)]
    rows = train_and_test_ensemble(
        images, first_labels.long().to(device), data.test_images.to(device),
        data.test_labels.to(device), data, arch, protocol, seed_parts, device, progress,
        per_network_images=True)
    return [[{"arch": arch, "net": net, **{k: v for k, v in row.items() if k != "arch"}}
             for net, row in enumerate(rows[s * n_nets:(s + 1) * n_nets])]
            for s in range(len(sets))]
