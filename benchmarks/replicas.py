"""Replicate batches against runs one by one: seconds per replicate-iteration of a batch of R
distillations (distill.loop.run_replicas) and of the same R runs alone, at the cpu profile's
shapes (FashionMNIST-shaped random data, ConvNetW32, IPC 1, 64 real images per class, init real)
unless told otherwise. The allocator is tuned as the CLI and the study's workers tune it.

    python benchmarks/replicas.py --replicas 10 --iterations 4 [--device cuda] [--ipc 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ptmdd_helpers.data.datasets import random_dataset  # noqa: E402
from ptmdd_helpers.distill import Replica, distill, make_spec, run_replicas  # noqa: E402
from ptmdd_helpers.malloc import tune_malloc  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(method: str, replicas: int, iterations: int, ipc: int, model: str,
            device: torch.device) -> dict:
    """Seconds per replicate-iteration alone and in one batch, and their ratio."""
    data = random_dataset("FashionMNIST", 300, 10)
    base = make_spec("FashionMNIST", method, ipc, iterations=iterations, model=model,
                     batch_real=64, init="real")
    specs = [dataclasses.replace(base, seed=seed) for seed in range(replicas)]
    distill(dataclasses.replace(base, iterations=1), data, device=device, progress=False)  # warm
    _sync(device)
    tic = time.perf_counter()
    for spec in specs:
        distill(spec, data, device=device, progress=False)
    _sync(device)
    alone = (time.perf_counter() - tic) / (replicas * iterations)
    run_replicas([Replica(dataclasses.replace(base, iterations=1, seed=s)) for s in range(2)],
                 data, device=device, progress=False)  # warm
    _sync(device)
    tic = time.perf_counter()
    run_replicas([Replica(spec) for spec in specs], data, device=device, progress=False)
    _sync(device)
    batched = (time.perf_counter() - tic) / (replicas * iterations)
    peak = (torch.cuda.max_memory_allocated(device) / replicas / 2**20
            if device.type == "cuda" else None)
    return {"method": method, "ipc": ipc, "replicas": replicas, "alone_s": alone,
            "batched_s": batched, "speedup": alone / batched, "peak_mib_per_replicate": peak}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="DC,DSA,DM")
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--model", default="ConvNetW32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| method | IPC | R | alone s/it | batched s/it per replicate | speed-up | peak MiB/replicate |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        row = measure(method, args.replicas, args.iterations, args.ipc, args.model, device)
        peak = f"{row['peak_mib_per_replicate']:.0f}" if row["peak_mib_per_replicate"] else "–"
        print(f"| {method} | {args.ipc} | {args.replicas} | {row['alone_s']:.3f} | "
              f"{row['batched_s']:.3f} | {row['speedup']:.2f}× | {peak} |", flush=True)


if __name__ == "__main__":
    main()
