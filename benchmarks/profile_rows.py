"""Where a benchmark row's time goes: the top operations of ``bench.py``'s DC IPC 1 row and of one
evaluation network, by self CPU time (``torch.profiler``).

``bench.py`` gives each row's seconds and its *conv alone* bound; this script names the operations
that make up the difference. Rows (``--only``):

* ``dc1``   one DC iteration, IPC 1, ConvNet, batch_real 256 per class (bench's ``dc1``), after an
            untimed warm-up iteration;
* ``eval``  one ConvNet trained on an IPC-10 set (100 random FashionMNIST-shaped images, DC
            protocol) for ``--epochs`` epochs and tested on 1000 images, after a one-epoch warm-up.

Each row prints a Markdown table: the ``--top`` operations by self CPU time, their share of the
profiled total, how often they ran, and the share of all convolution kernels (forward and
backward) against everything else.

Usage: ``python benchmarks/profile_rows.py [--only dc1,eval] [--precision bf16] [--top 12]``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ptmdd_helpers.distill import distill, protocol_for  # noqa: E402
from ptmdd_helpers.evaluation.evaluate import evaluate_images  # noqa: E402
from ptmdd_helpers.networks.training import PRECISIONS  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench", Path(__file__).with_name("bench.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

# the aten operations that run convolution kernels (oneDNN or the native fallbacks)
CONVOLUTION_OPS = ("convolution", "conv2d", "mkldnn_convolution", "convolution_backward",
                   "_slow_conv2d", "thnn_conv2d", "conv_depthwise2d")


def is_convolution(name: str) -> bool:
    """Whether the profiler event ``name`` (e.g. ``aten::mkldnn_convolution``) is a convolution."""
    base = name.split("::")[-1]
    return any(base.startswith(op) for op in CONVOLUTION_OPS)


def top_operations(fn: Callable[[], object], top: int) -> dict:
    """Profile one call of ``fn``: the ``top`` operations by self CPU time and the convolutions' share."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    convolutions = sum(e.self_cpu_time_total for e in events if is_convolution(e.key))
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [{"op": e.key, "self_seconds": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:top]]
    return {"total_seconds": total / 1e6, "convolution_share": convolutions / total, "top": rows}


def dc1(precision: str) -> Callable[[], object]:
    """bench.py's ``dc1`` row: one DC iteration, IPC 1, ConvNet, batch_real 256 per class."""
    data = bench.fashion_shaped(600, 100)
    spec = bench.row_spec("DC", 1, precision)

    def run():
        distill(spec, data, device="cpu", progress=False)

    run()  # warm-up
    return run


def evaluation(precision: str, epochs: int) -> Callable[[], object]:
    """One ConvNet trained ``epochs`` epochs on an IPC-10 set and tested on 1000 images."""
    data = bench.fashion_shaped(20, 1000)
    images, labels = bench.eval_set()

    def run(n_epochs=epochs):
        evaluate_images(images, labels, data, ["ConvNet"], 1,
                        protocol_for("DC", epochs=n_epochs, precision=precision), ("bench",),
                        device="cpu", progress=False)

    run(1)  # warm-up
    return run


def markdown(name: str, result: dict) -> str:
    """The profile of one row as a Markdown table."""
    lines = [f"{name}: {result['total_seconds']:.2f} s profiled, convolutions "
             f"{100 * result['convolution_share']:.0f} %", "",
             "| operation | self s | share | calls |", "|---|---:|---:|---:|"]
    lines += [f"| {r['op']} | {r['self_seconds']:.3f} | {100 * r['share']:.1f} % | {r['calls']} |"
              for r in result["top"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="dc1,eval")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the eval row")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    makers = {"dc1": lambda: dc1(args.precision),
              "eval": lambda: evaluation(args.precision, args.epochs)}
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = sorted(set(only) - set(makers))
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {', '.join(makers)}")
    results = {}
    for key in only:
        results[key] = top_operations(makers[key](), args.top)
        print(markdown(f"{key} ({args.precision})", results[key]) + "\n", flush=True)
    return results


if __name__ == "__main__":
    main()
