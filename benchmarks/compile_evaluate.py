"""Compiled against eager evaluation, end to end: seconds per call and accuracies, paired by set.

For each seed, one random real IPC-``--ipc`` subset of ``--dataset`` is evaluated twice in this
process by the same ``--nets`` ConvNetW32 networks (same initializations, batch orders and
augmentation draws): eagerly and with ``compile=True`` (``ptmdd_helpers.networks.compiling``). Printed per
seed: each call's seconds (the first compiled call includes the compilation) and the mean
accuracy of each; then the mean paired difference (compiled − eager, points) over the seeds.
The protocol is the cpu profile's (``--method DM``: 300 epochs with DSA augmentation).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/compile_evaluate.py --seeds 0,1,2,3,4``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ptmdd_helpers.data.datasets import load_dataset  # noqa: E402
from ptmdd_helpers.distill import protocol_for  # noqa: E402
from ptmdd_helpers.evaluation.evaluate import evaluate_images  # noqa: E402
from ptmdd_helpers.evaluation.training_sets import evaluation_seed_parts, random_real_subset  # noqa: E402
from ptmdd_helpers.seeding import make_generator  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="FashionMNIST")
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--nets", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--method", default="DM", help="whose evaluation protocol")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset, None if args.dataset == "Digits" else args.data_root)
    protocol = protocol_for(args.method, epochs=args.epochs)
    result: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "sets": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        images, labels = random_real_subset(data, args.ipc, make_generator("compile-evaluate", seed))
        row: dict = {"seed": seed}
        for compile in (False, True):  # noqa: A001
            start = time.perf_counter()
            rows = evaluate_images(images, labels, data, ["ConvNetW32"], args.nets, protocol,
                                   evaluation_seed_parts(args.dataset, seed), progress=False,
                                   compile=compile)
            name = "compiled" if compile else "eager"
            row[f"{name}_s"] = time.perf_counter() - start
            row[f"{name}_accuracy"] = 100 * statistics.fmean(r["accuracy"] for r in rows)
            row[f"{name}_networks_compiled"] = sum(r["compiled"] for r in rows)
        result["sets"].append(row)
        print(f"seed {seed}: eager {row['eager_s']:.1f} s {row['eager_accuracy']:.2f} %, compiled "
              f"{row['compiled_s']:.1f} s {row['compiled_accuracy']:.2f} % "
              f"({row['compiled_networks_compiled']}/{args.nets} networks compiled)", flush=True)
    differences = [r["compiled_accuracy"] - r["eager_accuracy"] for r in result["sets"]]
    result["mean_difference"] = statistics.fmean(differences)
    print(f"compiled − eager: {result['mean_difference']:+.2f} points (mean over "
          f"{len(differences)} sets; per set {', '.join(f'{d:+.2f}' for d in differences)})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
