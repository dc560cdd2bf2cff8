"""Time the distillation loops and the evaluation on FashionMNIST-shaped data with ConvNet.

Rows (``--only`` picks some, comma-separated):

* ``peak``      the machine's peak, measured in this run in fp32 and in bf16: a channels_last 3×3
                convolution (256×128×14×14 → 128, ConvNet's second layer) and a square matmul; the
                best of the two in a precision is the peak every row of that precision is compared
                with (an NCHW convolution is shown too);
* ``dc1``       one DC iteration, IPC 1 (one outer step, batch_real 256 per class);
* ``dc10``, ``dsa10``  one DC, one DSA iteration, IPC 10 (10 outer steps, 50 inner epochs);
* ``dm10``      one DM iteration, IPC 10, batch_real 256 per class;
* ``dm10clom``  the same with CLoM from one (randomly initialized, frozen) ConvNet;
* ``eval20``    training and testing 20 ConvNets on an IPC-10 set (300 epochs, DC protocol);
* ``mtt1``      one MTT iteration at the cpu profile's settings (FashionMNIST shapes, ConvNetW32,
                IPC 1, its ``distill.MTT`` values: N student steps on all 10 images);
* ``mtt10``     one MTT iteration at CIFAR-10 IPC 10 shapes (3×32×32, 100 images), ConvNet, N = 30
                (MTT's CIFAR-10 IPC-10 value), all images per step. Both match synthetic
                expert trajectories in memory: the cost does not depend on the experts' values.

Each row gives seconds, images per second, GFLOP (counted with ``torch.utils.flop_counter`` on an
untimed run that also warms up), effective GFLOP/s and its fraction of the peak of its precision;
*of bound*, the row's seconds over its "conv alone" seconds in its precision; also the
process's CPU seconds (CPU seconds much above threads × wall seconds cannot happen; much below
means the machine was busy), and "conv alone": the seconds the row's convolutions (forward and
backward, as logged during the counted run) take when replayed on their own, in the row's
precision and in bfloat16. With the same convolution kernels (oneDNN on a CPU), the row cannot run
faster than its "conv alone" time; the bf16 column is that bound for a bfloat16 version of the
row. ``--quick`` extrapolates the long rows: DC/DSA IPC 10 from runs with 1 and 2 outer steps (t10
= t1 + 9·(t2 − t1)), the evaluation from runs of 2 and 6 epochs on 1000 test images (fixed cost
scaled to 10000 test images, per-epoch cost to 300 epochs; the loop with 4 networks, scaled to
20). ``--looped`` runs the distillation rows with the per-class reference path instead of the
batched one. The evaluation row trains its networks as ``evaluate_images`` does by default (a vmap
ensemble on CUDA, one after another on a CPU). ``--compare`` runs both paths of every row (batched
and looped, ensemble and loop). ``--precision bf16`` runs every row in mixed precision: the
distillation spec's ``precision`` and the evaluation protocol's. Results are printed as a table
and, with ``--json PATH``, written as JSON (usage: benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ptmdd_helpers.data.datasets import LoadedDataset, random_dataset  # noqa: E402
from ptmdd_helpers.distill import distill, grouped, make_spec, protocol_for  # noqa: E402
from ptmdd_helpers.evaluation.evaluate import evaluate_images  # noqa: E402
from ptmdd_helpers.malloc import tune_malloc  # noqa: E402
from ptmdd_helpers.networks.training import PRECISIONS  # noqa: E402
from ptmdd_helpers.pools.experts import SyntheticExperts  # noqa: E402
from ptmdd_helpers.pools.guidance import Guidance, GuidanceSpec  # noqa: E402
from ptmdd_helpers.pools.members import MemberSpec  # noqa: E402
from ptmdd_helpers.pools.pretrain import write_initial_checkpoint  # noqa: E402
from ptmdd_helpers.seeding import make_generator  # noqa: E402
from ptmdd_helpers.store.runfiles import git_commit  # noqa: E402

ROWS = ("peak", "dc1", "dc10", "dsa10", "dm10", "dm10clom", "eval20", "mtt1", "mtt10")
CLASSES, BATCH_REAL, EVAL_NETS, EVAL_EPOCHS, TEST_IMAGES = 10, 256, 20, 300, 10000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> tuple[float, float]:
    """Best wall seconds of ``repeats`` calls, and the process CPU seconds of that call."""
    best = (float("inf"), float("nan"))
    for _ in range(repeats):
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = min(best, (wall, cpu))
    return best


class ConvolutionLog(TorchDispatchMode):
    """The convolutions (forward and backward) a call performs: signature -> how many times."""

    OPS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            self.calls[(func, tuple(_describe(a) for a in args))] += 1
        return func(*args, **(kwargs or {}))


def _describe(arg: object) -> object:
    if isinstance(arg, torch.Tensor):
        return ("tensor", tuple(arg.shape), tuple(arg.stride()), arg.dtype, str(arg.device))
    return tuple(arg) if isinstance(arg, list) else arg


def _materialize(arg: object, dtype: torch.dtype | None) -> object:
    """A random tensor laid out as the recorded one (in ``dtype`` if given); other args as is."""
    if not (isinstance(arg, tuple) and arg[:1] == ("tensor",)):
        return list(arg) if isinstance(arg, tuple) else arg
    _, shape, stride, recorded, device = arg
    storage = 1 + sum((n - 1) * st for n, st in zip(shape, stride, strict=True) if n > 0)
    base = torch.randn(storage, dtype=dtype or recorded, device=device)
    return base.as_strided(shape, stride)


def convolution_seconds(log: ConvolutionLog, device: torch.device, dtype=None) -> float:
    """Seconds the logged convolutions take alone (best of 3 per distinct call, times its count);
    in ``dtype`` instead of the recorded one if given (bfloat16: what reduced precision could buy).
    """
    total = 0.0
    for (func, described), count in log.calls.items():
        args = [_materialize(a, dtype) for a in described]
        func(*args)
        total += count * timed(lambda func=func, args=args: func(*args), device, 3)[0]
    return total


# Whether the bf16 peak and each row's bf16 "conv alone" bound are measured (--no-bf16-bound: not,
# for an fp32 run on a CPU without native bfloat16, where they take minutes).
MEASURE_BF16 = True


def counted(fn: Callable[[], object], device: torch.device) -> tuple[float, float, float | None]:
    """FLOPs of one call of ``fn`` (this call also serves as the warm-up), and the seconds its
    convolutions take when replayed alone, in their own precision and in bfloat16 (``None``
    unless :data:`MEASURE_BF16`)."""
    with FlopCounterMode(display=False) as counter, ConvolutionLog() as log:
        fn()
    return (float(counter.get_total_flops()), convolution_seconds(log, device),
            convolution_seconds(log, device, torch.bfloat16) if MEASURE_BF16 else None)


# --------------------------------------------------------------------------- data and machine


def fashion_shaped(train_per_class: int, test_images: int,
                   dataset: str = "FashionMNIST") -> LoadedDataset:
    """Random data with ``dataset``'s shape, classes and registry entry (timing only)."""
    return random_dataset(dataset, train_per_class, test_images)


def mtt_row(name: str, dataset: str, model: str, syn_steps: int, ipc: int, settings: dict,
            device: torch.device, repeats: int, precision: str = "fp32") -> dict:
    """Seconds and FLOPs of one MTT iteration (``settings``: make_spec overrides)."""
    from ptmdd_helpers.networks.models import create_model

    data = fashion_shaped(ipc, 100, dataset)
    spec = make_spec(dataset, "MTT", ipc, iterations=1, model=model, syn_steps=syn_steps,
                     precision=precision, **settings)
    info = data.info
    experts = SyntheticExperts(create_model(model, info.channels, info.num_classes,
                                            info.image_size))

    def run():
        distill(spec, data, device=device, progress=False, resources=experts)

    counts = counted(run, device)
    wall, cpu = timed(run, device, repeats)
    batch = spec.trajectory.batch_syn or CLASSES * ipc
    return _row(name, "batched", wall, cpu, counts[0], syn_steps * batch,
                f"N = {syn_steps}, batch {batch}", counts[1], counts[2], precision)


def machine(device: torch.device) -> dict:
    """What ran the benchmark: CPU, threads, versions, load, commit."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
        "commit": git_commit(), "cpu_pass_bytes": grouped.CPU_PASS_BYTES,
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --------------------------------------------------------------------------- rows


def peak_rows(device: torch.device, quick: bool, precisions: Sequence[str] = ("fp32", "bf16"),
              small: bool = False) -> list[dict]:
    """Channels_last and NCHW 3×3 convolution, and a matmul, in each of ``precisions``: GFLOP/s
    each (``small``: a 32-image convolution and a 512² matmul, which read below the full peak)."""
    rows = []
    big = device.type == "cuda"
    batch = 32 if small else 256
    conv_flops = 2.0 * batch * 128 * 128 * 9 * 14 * 14
    repeats = 3 if quick else 10
    n = 512 if small else 8192 if big else 2048
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    for precision in precisions:
        dtype = dtypes[precision]
        x = torch.randn(batch, 128, 14, 14, device=device, dtype=dtype)
        w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype)
        for name, fmt in (("peak conv3x3 channels_last", torch.channels_last),
                          ("conv3x3 NCHW", torch.contiguous_format)):
            xf, wf = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)

            def run(xf=xf, wf=wf):
                return torch.conv2d(xf, wf, padding=1)

            run()
            wall, cpu = timed(run, device, repeats)
            rows.append(_row(name, "-", wall, cpu, conv_flops, batch, precision=precision))
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        (a @ b)
        wall, cpu = timed(lambda a=a, b=b: a @ b, device, repeats)
        rows.append(_row(f"peak matmul {n}", "-", wall, cpu, 2.0 * n ** 3, None,
                         precision=precision))
    return rows


def _row(name: str, path: str, wall: float, cpu: float, flops: float, images: float | None,
         note: str = "", conv: float | None = None, conv_bf16: float | None = None,
         precision: str = "fp32") -> dict:
    return {"row": name, "path": path, "precision": precision, "seconds": wall, "cpu_seconds": cpu,
            "images": images, "images_per_second": images / wall if images else None,
            "gflop": flops / 1e9, "gflops": flops / 1e9 / wall, "note": note,
            "conv_seconds": conv, "conv_seconds_bf16": conv_bf16}


def untrained_clom(data: LoadedDataset, device: torch.device) -> Guidance:
    """CLoM from one frozen, untrained ConvNet (its epoch-0 checkpoint): the cost, not the quality.

    The checkpoint lives in a temporary pool only until the guidance has loaded it.
    """
    spec = GuidanceSpec("clom", "FashionMNIST", ("ConvNet",), 1, epoch=0, alphas=(100.0,))
    with tempfile.TemporaryDirectory(prefix="ptmdd-bench-pool-") as pool_root:
        write_initial_checkpoint(MemberSpec("FashionMNIST", "ConvNet", 0), pool_root)
        return Guidance(spec, data, device=device, pool_root=pool_root)


def row_spec(method: str, ipc: int, precision: str = "fp32"):
    """The distillation spec of a row: one iteration, ConvNet, batch_real 256 per class."""
    return make_spec("FashionMNIST", method, ipc, iterations=1, model="ConvNet",
                     batch_real=BATCH_REAL, precision=precision)


def eval_set() -> tuple[torch.Tensor, torch.Tensor]:
    """The IPC-10 set (random, FashionMNIST-shaped) the evaluation row trains on."""
    generator = make_generator("bench-eval")
    images = torch.randn(CLASSES * 10, 1, 28, 28, generator=generator)
    return images, torch.arange(CLASSES).repeat_interleave(10)


def distill_row(name: str, method: str, ipc: int, data: LoadedDataset, device: torch.device,
                batched: bool, quick: bool, repeats: int, clom: Guidance | None = None,
                precision: str = "fp32") -> dict:
    """Seconds and FLOPs of one distillation iteration (IPC-10 DC/DSA extrapolated in quick mode)."""
    spec, guidance = row_spec(method, ipc, precision), clom
    if clom is not None:
        spec = dataclasses.replace(spec, guidance=clom.spec)

    def measure(spec_used):  # wall, CPU s, FLOPs, convolutions alone (own precision, bf16)
        def run():
            distill(spec_used, data, guidance=guidance, device=device,
                    progress=False, batched=batched)
        counts = counted(run, device)
        return (*timed(run, device, repeats), *counts)

    outer, inner = spec.outer_loop, spec.inner_loop
    images = CLASSES * (outer * (BATCH_REAL + ipc) + (outer - 1) * inner * ipc)
    note = ""
    if method == "DM":
        images = CLASSES * (BATCH_REAL + ipc)
    if quick and method != "DM" and outer > 2:  # DM has no outer loop
        at1 = measure(dataclasses.replace(spec, outer_loop=1))
        at2 = measure(dataclasses.replace(spec, outer_loop=2))
        k = outer - 1
        measured = [None if v1 is None or v2 is None else v1 + k * (v2 - v1)  # no bf16 column
                    for v1, v2 in zip(at1, at2, strict=True)]
        note = f"extrapolated from 1 and 2 outer steps ({at1[0]:.2f} s, {at2[0]:.2f} s)"
    else:
        measured = measure(spec)
    wall, cpu, flops, conv, conv_bf16 = measured
    return _row(name, "batched" if batched else "looped", wall, cpu, flops, images, note,
                conv, conv_bf16, precision)


def eval_row(device: torch.device, quick: bool, ensemble: bool, precision: str = "fp32") -> dict:
    """20 ConvNets trained on an IPC-10 set for 300 epochs and tested on 10000 images.

    Times ``evaluate_images`` at E1 and E2 epochs after an untimed warm-up and extrapolates
    linearly in the epochs (fixed part: building the networks and the test). ``ensemble``: the
    networks trained together as a vmap ensemble, else one after another; in ``quick`` mode the
    loop times 4 networks (its cost is per network) and both use fewer test images.
    """
    test_images = 1000 if quick else TEST_IMAGES
    data = fashion_shaped(20, test_images)
    images, labels = eval_set()
    e1, e2 = (2, 6) if quick else (10, 40)
    nets = EVAL_NETS if ensemble or not quick else 4

    def run(n_nets, epochs):
        evaluate_images(images, labels, data, ["ConvNet"], n_nets,
                        protocol_for("DC", epochs=epochs, precision=precision), ("bench",),
                        device=device, progress=False, ensemble=ensemble)

    at1, at2 = counted(lambda: run(1, e1), device), counted(lambda: run(1, e2), device)  # per net
    run(nets, 1)  # warm-up at the timed size
    w1, c1 = timed(lambda: run(nets, e1), device)
    w2, c2 = timed(lambda: run(nets, e2), device)
    scale = TEST_IMAGES / test_images

    def extrapolate(at_e1, at_e2, factor):
        if at_e1 is None or at_e2 is None:  # the bf16 column of --no-bf16-bound
            return None
        per_epoch = (at_e2 - at_e1) / (e2 - e1)
        fixed = max(at_e1 - e1 * per_epoch, 0.0)
        return factor * (fixed * scale + EVAL_EPOCHS * per_epoch)

    wall = extrapolate(w1, w2, EVAL_NETS / nets)
    cpu = extrapolate(c1, c2, EVAL_NETS / nets)
    flops, conv, conv_bf16 = (extrapolate(v1, v2, EVAL_NETS) for v1, v2 in zip(at1, at2, strict=True))
    n_images = EVAL_NETS * (EVAL_EPOCHS * len(labels) + TEST_IMAGES)
    note = (f"{nets} networks timed at {e1} and {e2} epochs ({w1:.1f} s, {w2:.1f} s), "
            f"{test_images} test images scaled to {TEST_IMAGES}; {wall / EVAL_NETS:.1f} s per network")
    path = "ensemble" if ensemble else "loop"
    return _row("eval 20 ConvNets, IPC 10, 300 epochs", path, wall, cpu, flops, n_images, note,
                conv, conv_bf16, precision)


# --------------------------------------------------------------------------- main


def table(rows: list[dict], peaks: dict[str, float]) -> str:
    """A Markdown table of the rows: *of peak* against the peak of the row's precision, *of
    bound* the row's seconds over its own convolutions' seconds alone (in its precision)."""
    lines = ["| row | path | precision | seconds | CPU s | images/s | GFLOP | GFLOP/s | of peak "
             "| conv alone s | of bound | conv alone s, bf16 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ips = f"{r['images_per_second']:.0f}" if r["images_per_second"] else "–"
        conv = [f"{r[k]:.3f}" if r.get(k) is not None else "–"
                for k in ("conv_seconds", "conv_seconds_bf16")]
        bound = f"{r['of_bound']:.2f}×" if r.get("of_bound") is not None else "–"
        lines.append(
            f"| {r['row']} | {r['path']} | {r['precision']} | {r['seconds']:.3f} | "
            f"{r['cpu_seconds']:.2f} | {ips} | {r['gflop']:.1f} | {r['gflops']:.1f} | "
            f"{100 * r['gflops'] / peaks[r['precision']]:.0f} % | {conv[0]} | {bound} | {conv[1]} |"
        )
    return "\n".join(lines)


def cpu_profile_mtt() -> dict:
    """The trajectory settings of ``parameters/cpu.yaml``'s ``distill.MTT`` (what ``mtt1`` times)."""
    import yaml

    profile = yaml.safe_load((REPO / "parameters" / "cpu.yaml").read_text())
    section = dict(profile["shared"]["distill"].get("MTT") or {})
    keep = ("syn_steps", "expert_epochs", "max_start_epoch", "batch_syn", "n_experts")
    return {"syn_steps": 50, **{k: v for k, v in section.items() if k in keep}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="extrapolate the long rows (< 5 min)")
    parser.add_argument("--only", default=",".join(ROWS), help=f"rows to run, from {','.join(ROWS)}")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    paths = parser.add_mutually_exclusive_group()
    paths.add_argument("--looped", action="store_true", help="per-class reference path only")
    paths.add_argument("--compare", action="store_true",
                       help="both paths: batched and per-class, ensemble and loop")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="every row's precision: the distillation spec's and the evaluation "
                             "protocol's (bf16: convolutions and matmuls under autocast)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, help="timed runs per row, best kept (default 1, 2 full)")
    parser.add_argument("--no-bf16-bound", action="store_true", help="fp32 runs: skip the bf16 "
                        "peak and the bf16 'conv alone' column (minutes without native bfloat16)")
    parser.add_argument("--small-peak", action="store_true", help="the peak on a 32-image "
                        "convolution and a 512² matmul (fast; reads below the full peak)")
    parser.add_argument("--untuned", action="store_true", help="leave glibc's allocator as it is "
                        "(the CLI and the study's workers tune it: ptmdd_helpers.malloc)")
    parser.add_argument("--pass-mb", type=float,
                        help="activation MB per pass on a CPU (grouped.CPU_PASS_BYTES)")
    args = parser.parse_args(argv)
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = sorted(set(only) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {', '.join(ROWS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pass_mb:
        grouped.CPU_PASS_BYTES = int(args.pass_mb * 2**20)
    device = torch.device(args.device)
    repeats = args.repeats or (1 if args.quick else 2)
    info = machine(device)
    info["malloc_tuned"] = False if args.untuned else tune_malloc()  # what users run
    print("machine:", json.dumps(info, indent=1), flush=True)
    paths = [True, False] if args.compare else [not args.looped]
    ensembles = [True, False] if args.compare else [device.type == "cuda"]  # evaluate_images' default
    started = time.perf_counter()
    global MEASURE_BF16
    MEASURE_BF16 = not args.no_bf16_bound or args.precision == "bf16"
    measured = [p for p in PRECISIONS if p == "fp32" or p == args.precision or MEASURE_BF16]
    # always measured: every fraction refers to it
    rows = peak_rows(device, args.quick, measured, args.small_peak)
    peaks = {p: max(r["gflops"] for r in rows if r["row"].startswith("peak")
                    and r["precision"] == p) for p in measured}
    peak = peaks["fp32"]
    for r in rows:
        print(f"{r['row']} ({r['precision']}): {r['gflops']:.1f} GFLOP/s", flush=True)
    data = fashion_shaped(600, 100)
    cpu_mtt = cpu_profile_mtt()
    clom = untrained_clom(data, device) if "dm10clom" in only else None
    distill_rows = {"dc1": ("DC IPC 1", "DC", 1, None), "dc10": ("DC IPC 10", "DC", 10, None),
                    "dsa10": ("DSA IPC 10", "DSA", 10, None), "dm10": ("DM IPC 10", "DM", 10, None),
                    "dm10clom": ("DM IPC 10 + CLoM", "DM", 10, clom)}
    for key in only:
        if key in distill_rows:
            name, method, ipc, clom = distill_rows[key]
            for batched in paths:
                row = distill_row(name, method, ipc, data, device, batched, args.quick, repeats,
                                  clom, args.precision)
                rows.append(row)
                print(f"{row['row']} [{row['path']}]: {row['seconds']:.2f} s, {row['gflops']:.1f} "
                      f"GFLOP/s {row['note']}", flush=True)
        elif key in ("mtt1", "mtt10"):
            if key == "mtt1":  # the cpu profile's MTT settings
                settings = dict(cpu_mtt)
                steps = settings.pop("syn_steps")
                row = mtt_row("MTT IPC 1 (cpu profile)", "FashionMNIST", "ConvNetW32", steps, 1,
                              settings, device, repeats, args.precision)
            else:
                row = mtt_row("MTT IPC 10 (CIFAR-10 shapes)", "CIFAR10", "ConvNet", 30, 10, {},
                              device, repeats, args.precision)
            rows.append(row)
            print(f"{row['row']}: {row['seconds']:.2f} s {row['note']}", flush=True)
        elif key == "eval20":
            for ensemble in ensembles:
                row = eval_row(device, args.quick, ensemble, args.precision)
                rows.append(row)
                print(f"{row['row']} [{row['path']}]: {row['seconds']:.1f} s {row['note']}",
                      flush=True)
    for r in rows:
        r["fraction_of_peak"] = r["gflops"] / peaks[r["precision"]]
        r["of_bound"] = r["seconds"] / r["conv_seconds"] if r.get("conv_seconds") else None
    info["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["benchmark_seconds"] = time.perf_counter() - started
    result = {"machine": info, "peak_gflops": peak, "peak_gflops_bf16": peaks.get("bf16"),
              "precision": args.precision, "quick": args.quick, "rows": rows}
    print()
    print(table(rows, peaks))
    bf16_peak = f"{peaks['bf16']:.1f}" if "bf16" in peaks else "not measured"
    print(f"\npeak {peak:.1f} GFLOP/s (bf16 {bf16_peak}); load average "
          f"{info['load_average_start']} -> "
          f"{info['load_average_end']}; {info['benchmark_seconds']:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
