"""Images per forward pass when testing a network: seconds to test each architecture on a test
set of ``--images`` images in passes of each ``--sizes`` size, and whether the logits are the same
bits whatever the size (the default size, ``training.inference_batch_size``, changes no result only
where they are).

    python benchmarks/inference_batch.py [--archs ConvNetW32,ConvNet,LeNet] [--sizes 16,32,64,128,256]
        [--images 10000] [--shape 1,28,28] [--repeats 3] [--threads 1] [--json out.json]

Untrained networks (seeded) on seeded random images of the dataset's shape, in evaluation mode,
as ``training.accuracy`` runs them; the sizes are timed in turn, ``--repeats`` times, and each
time is the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ptmdd_helpers.networks.models import create_model  # noqa: E402
from ptmdd_helpers.networks.training import inference_batch_size  # noqa: E402


@torch.no_grad()
def logits_in_passes(network: torch.nn.Module, images: torch.Tensor, size: int) -> torch.Tensor:
    """The network's logits on ``images``, ``size`` images per forward pass."""
    return torch.cat([network(images[start:start + size]) for start in range(0, len(images), size)])


def sweep(arch: str, images: torch.Tensor, sizes: list[int], repeats: int) -> list[dict]:
    """One row per size: median seconds over ``repeats`` and whether the logits equal the first
    size's bit for bit."""
    torch.manual_seed(0)
    channels, height, width = images.shape[1:]
    network = create_model(arch, channels, 10, (height, width)).eval()
    logits_in_passes(network, images[:max(sizes)], max(sizes))  # first-call set-up, untimed
    times: dict[int, list[float]] = {size: [] for size in sizes}
    outputs: dict[int, torch.Tensor] = {}
    for _ in range(repeats):
        for size in sizes:
            start = time.perf_counter()
            outputs[size] = logits_in_passes(network, images, size)
            times[size].append(time.perf_counter() - start)
    first = outputs[sizes[0]]
    return [{"arch": arch, "size": size, "seconds": statistics.median(times[size]),
             "same_bits": bool(torch.equal(outputs[size], first))} for size in sizes]


def main(argv: list[str] | None = None) -> dict:
    """Run the sweep, print a markdown table and return (and optionally write) the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="ConvNetW32,ConvNet,LeNet")
    parser.add_argument("--sizes", default="16,32,64,128,256")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--shape", default="1,28,28", help="one image's channels,height,width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    shape = tuple(int(s) for s in args.shape.split(","))
    images = torch.randn((args.images, *shape), generator=torch.Generator().manual_seed(0))
    default = inference_batch_size("cpu")
    print(f"{args.images} images of {'×'.join(map(str, shape))}, {args.threads} thread(s), "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}; "
          f"default size on a CPU: {default}")
    print("| architecture | images per pass | seconds (median) | vs fastest | same logits, bit for bit |")
    print("|---|---:|---:|---:|---|")
    rows = []
    for arch in args.archs.split(","):
        found = sweep(arch, images, sizes, args.repeats)
        fastest = min(row["seconds"] for row in found)
        for row in found:
            mark = " (default)" if row["size"] == default else ""
            print(f"| {arch} | {row['size']}{mark} | {row['seconds']:.2f} | "
                  f"{row['seconds'] / fastest:.2f}× | {'yes' if row['same_bits'] else 'NO'} |",
                  flush=True)
        rows += found
    result = {"images": args.images, "shape": list(shape), "threads": args.threads,
              "default": default, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
