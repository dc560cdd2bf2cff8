"""Benchmark: evaluation networks trained one by one (loop) vs as a vmap ensemble.

An IPC-10 FashionMNIST-shaped training set of random tensors (100 images 1×28×28, 10 classes)
and a random test set; ``--nets`` networks of ``--arch`` trained ``--epochs`` epochs by the
evaluation protocol (batch 256, SGD, optional DSA). Prints seconds per network-epoch (training),
the test time per network and the peak resident memory of the process. Run one mode per process
so that the peak memory is that mode's::

    python benchmarks/ensemble.py --mode loop --arch ConvNet --nets 20 --epochs 5
    python benchmarks/ensemble.py --mode ensemble --arch ConvNet --nets 20 --epochs 5
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from ptmdd_helpers.data import LoadedDataset, get_info
from ptmdd_helpers.ensemble import Ensemble
from ptmdd_helpers.evaluate import _augmenter, _network, network_seed_parts, protocol_for
from ptmdd_helpers.training import accuracy, make_optimizer, resolve_device, train_epoch


def main() -> None:
    """Parse arguments, train, print one line of timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("loop", "ensemble"), required=True)
    parser.add_argument("--arch", default="ConvNet")
    parser.add_argument("--nets", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--augment", choices=("none", "dsa"), default="none")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)
    info = get_info("FashionMNIST")
    data = LoadedDataset(
        info, torch.randn(100, 1, 28, 28, generator=generator), torch.arange(100) % 10,
        torch.randn(args.test_size, 1, 28, 28, generator=generator),
        torch.arange(args.test_size) % 10,
    )
    protocol = protocol_for("DSA", epochs=args.epochs, augment=args.augment)
    recipe = protocol.recipe()
    augment = _augmenter(protocol, data)
    x, y = data.train_images.to(device), data.train_labels.to(device)
    test_x, test_y = data.test_images.to(device), data.test_labels.to(device)
    parts = [network_seed_parts(("bench",), i) for i in range(args.nets)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    train_seconds = test_seconds = 0.0
    if args.mode == "loop":
        for p in parts:
            model, gen = _network(data, args.arch, p, device)
            optimizer, scheduler = make_optimizer(model, recipe)
            sync()
            start = time.perf_counter()
            for _ in range(recipe.epochs):
                train_epoch(model, optimizer, x, y, recipe.batch_size, gen, augment)
                scheduler.step()
            sync()
            middle = time.perf_counter()
            accuracy(model, test_x, test_y)
            sync()
            train_seconds += middle - start
            test_seconds += time.perf_counter() - middle
    else:
        networks = [_network(data, args.arch, p, device) for p in parts]
        ensemble = Ensemble([m for m, _ in networks])
        generators = [g for _, g in networks]
        del networks
        optimizer, scheduler = make_optimizer(ensemble.parameters(), recipe)
        sync()
        start = time.perf_counter()
        for _ in range(recipe.epochs):
            ensemble.train_epoch(optimizer, x, y, recipe.batch_size, generators, augment)
            scheduler.step()
        sync()
        middle = time.perf_counter()
        ensemble.accuracy(test_x, test_y)
        sync()
        train_seconds = middle - start
        test_seconds = time.perf_counter() - middle
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.mode:8s} {args.arch:10s} nets={args.nets} epochs={args.epochs} "
        f"augment={args.augment} threads={torch.get_num_threads()}: "
        f"{train_seconds / (args.nets * args.epochs):.4f} s per network-epoch, "
        f"test {test_seconds / args.nets:.4f} s per network, peak RSS {peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
