"""Accuracy and time of evaluation networks in fp32 and in bf16 mixed precision, same seeds.

For each synthetic set (a distillation run of a store, ``--runs``) or random real subset
(``--real K``: K images per class), trains ``--nets`` fresh networks with
``evaluate_images`` under the set's own evaluation protocol (DC: no augmentation; DSA/DM: DSA),
once with ``precision="fp32"`` and once with ``"bf16"`` (:data:`ptmdd_helpers.networks.training.PRECISIONS`),
and prints per set the mean ± sample SD (ddof 1, over networks; ``ptmdd_helpers.spread``) of the
test accuracy in each
precision, their difference and the seconds per network. This is the accuracy study behind
``EvalProtocol.precision``; ``benchmarks/README.md`` holds its latest results.

Usage: ``python benchmarks/precision.py --store runs/store --runs distill-… distill-… --nets 5
--epochs 300 [--real 10] [--dataset FashionMNIST] [--data-root ../shared/data] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ptmdd_helpers.data.datasets import load_dataset  # noqa: E402
from ptmdd_helpers.distill import protocol_for  # noqa: E402
from ptmdd_helpers.evaluation.evaluate import evaluate_images  # noqa: E402
from ptmdd_helpers.evaluation.training_sets import random_real_subset  # noqa: E402
from ptmdd_helpers.malloc import tune_malloc  # noqa: E402
from ptmdd_helpers.networks.training import PRECISIONS  # noqa: E402
from ptmdd_helpers.seeding import make_generator  # noqa: E402
from ptmdd_helpers.spread import mean_sd  # noqa: E402
from ptmdd_helpers.store.runstore import RunStore  # noqa: E402


def stored_set(store: RunStore, run_id: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The spec, images and labels of a complete distillation run in ``store``."""
    run = store.load(run_id)
    tensors = run.tensors()
    return run.spec, tensors["images"], tensors["labels"]


def compare(name: str, method: str, images, labels, data, args) -> dict:
    """fp32 and bf16 accuracies of ``args.nets`` networks trained on one set."""
    result = {"set": name, "method": method, "nets": args.nets, "epochs": args.epochs}
    for precision in PRECISIONS:
        protocol = protocol_for(method, epochs=args.epochs, precision=precision)
        start = time.perf_counter()
        rows = evaluate_images(images, labels, data, [args.arch], args.nets, protocol,
                               ("precision-study", name), progress=False, ensemble=False)
        accuracies = [100 * row["accuracy"] for row in rows]
        mean, sd, _ = mean_sd(accuracies)
        result[precision] = {
            "accuracies": accuracies, "mean": mean, "std": sd or 0.0,
            "seconds_per_net": (time.perf_counter() - start) / args.nets,
            "augment": protocol.augment,
        }
        print(f"{name} {precision}: {result[precision]['mean']:.2f} ± "
              f"{result[precision]['std']:.2f} % ({result[precision]['seconds_per_net']:.1f} s "
              f"per network)", flush=True)
    result["difference"] = result["bf16"]["mean"] - result["fp32"]["mean"]
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("runs/store"))
    parser.add_argument("--runs", nargs="*", default=[], help="distillation run ids in --store")
    parser.add_argument("--real", type=int, nargs="*", default=[],
                        help="random real subsets with this many images per class")
    parser.add_argument("--dataset", default="FashionMNIST", help="dataset of --real subsets")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--arch", default="ConvNet")
    parser.add_argument("--nets", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tune_malloc()
    results, datasets = [], {}

    def dataset(name):
        if name not in datasets:
            datasets[name] = load_dataset(name, root=args.data_root)
        return datasets[name]

    store = RunStore(args.store)
    for run_id in args.runs:
        spec, images, labels = stored_set(store, run_id)
        results.append(compare(f"{run_id} ({spec['method']} IPC {spec['ipc']} seed "
                               f"{spec['seed']})", spec["method"], images, labels,
                               dataset(spec["dataset"]), args))
    for per_class in args.real:
        data = dataset(args.dataset)
        images, labels = random_real_subset(data, per_class, make_generator("precision", per_class))
        results.append(compare(f"random real, {per_class} per class", "DC", images, labels, data,
                               args))
    print("\n| set | protocol | fp32 % | bf16 % | bf16 − fp32 | s/net fp32 | s/net bf16 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        f, b = r["fp32"], r["bf16"]
        print(f"| {r['set']} | {r['method']}, {f['augment']}, {r['epochs']} ep., {r['nets']} nets | "
              f"{f['mean']:.2f} ± {f['std']:.2f} | {b['mean']:.2f} ± {b['std']:.2f} | "
              f"{r['difference']:+.2f} | {f['seconds_per_net']:.1f} | {b['seconds_per_net']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
