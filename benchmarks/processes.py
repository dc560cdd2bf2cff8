"""Several processes sharing one device: seconds per iteration of one distillation in each of N
processes started together, against one process alone (issue 24: several processes on one GPU
must not lose throughput). Each process gets max(1, cores // N) threads, as the study's workers.

    python benchmarks/processes.py --device cuda --processes 1,2,4 [--method DC --ipc 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import sys, time, torch
sys.path.insert(0, {root!r})
from ptmdd_helpers.data.datasets import random_dataset
from ptmdd_helpers.distill import distill, make_spec
from ptmdd_helpers.malloc import tune_malloc
tune_malloc()
torch.set_num_threads({threads})
data = random_dataset("FashionMNIST", 300, 10)
spec = make_spec("FashionMNIST", {method!r}, {ipc}, iterations={iterations}, model={model!r},
                 batch_real=64, init="real", seed={seed})
distill(make_spec("FashionMNIST", {method!r}, {ipc}, iterations=1, model={model!r},
                  batch_real=64, init="real"), data, device={device!r}, progress=False)
if {device!r}.startswith("cuda"):
    torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.readline()  # start together
tic = time.perf_counter()
distill(spec, data, device={device!r}, progress=False)
if {device!r}.startswith("cuda"):
    torch.cuda.synchronize()
print((time.perf_counter() - tic) / {iterations}, flush=True)
"""


def run(n: int, args: argparse.Namespace) -> list[float]:
    """Seconds per iteration in each of ``n`` processes started together."""
    threads = max(1, (os.cpu_count() or 1) // n)
    workers = [subprocess.Popen(
        [sys.executable, "-c", WORKER.format(root=str(ROOT), threads=threads, method=args.method,
                                             ipc=args.ipc, iterations=args.iterations,
                                             model=args.model, seed=seed, device=args.device)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for seed in range(n)]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    seconds = [float(worker.stdout.readline()) for worker in workers]
    for worker in workers:
        worker.wait()
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--method", default="DC")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--model", default="ConvNet")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(f"{args.method} IPC {args.ipc} {args.model} on {args.device}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("| processes | threads each | s/it per process | iterations/s, all together | vs 1 alone |")
    print("|---|---|---|---|---|")
    alone = None
    for n in (int(k) for k in args.processes.split(",")):
        seconds = run(n, args)
        throughput = sum(1 / s for s in seconds)
        alone = alone or throughput
        print(f"| {n} | {max(1, (os.cpu_count() or 1) // n)} | {sum(seconds) / n:.3f} | "
              f"{throughput:.2f} | {throughput / alone:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
