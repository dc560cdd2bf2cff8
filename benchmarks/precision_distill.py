"""Accuracy of bf16 distillation against fp32, paired by seed, at a profile's settings.

For each method and seed: notebook 00's baseline distillation of the profile (``grids.distill_spec``:
the cpu profile's DM, DC and DSA settings) in fp32, and the same spec with ``precision="bf16"``.
The precision is not part of the replicate key, so both see the same networks, batches and
augmentations; both sets are evaluated by the profile's evaluation spec, whose networks follow
(dataset, seed), so the same networks train on both. Everything goes through the profile's run
store (the fp32 runs of a finished 00 are reused, nothing is computed twice). Prints per method the
mean over seeds of bf16 − fp32 (per-seed mean over networks, in points), its 95 % paired
t-interval (``intervals.paired_interval``, scipy's ``ttest_rel`` interval) and the mean seconds of a
distillation in each precision. ``benchmarks/README.md`` holds the latest results.

Usage: ``python benchmarks/precision_distill.py --profile cpu --seeds 0,1,2,3,4
[--methods DM,DC,DSA] [--set KEY=VALUE ...] [--json out.json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ptmdd_helpers import study  # noqa: E402
from ptmdd_helpers.report.intervals import paired_interval  # noqa: E402
from ptmdd_helpers.store.evaluations import evaluation_run  # noqa: E402
from ptmdd_helpers.store.runs import EvaluationSpec, distill_run  # noqa: E402
from ptmdd_helpers.study import grids, values  # noqa: E402


def compare_precisions(params: dict, method: str, seeds: list[int]) -> dict:
    """Paired bf16 − fp32 accuracy (points) and distillation seconds of ``method`` over ``seeds``."""
    workspace = study.workspace(params)
    ipc = int(params["ipcs"][0])
    arch = params["distill"].get("model", "ConvNet")
    n_nets = int((params.get("eval") or {}).get("n_nets", 1))
    rows = []
    for seed in seeds:
        fp32 = grids.distill_spec(params, method, ipc, seed)
        row = {"seed": seed}
        for precision in ("fp32", "bf16"):
            subject = dataclasses.replace(fp32, precision=precision)
            protocol = values.protocol(params, method, subject.dataset, arch)
            run = evaluation_run(EvaluationSpec(subject, arch, n_nets, protocol), workspace)
            row[precision] = 100 * run.metrics["summary"]["mean"]
            row[f"{precision}_seconds"] = distill_run(subject, workspace).metrics["distill_seconds"]
        rows.append(row)
        print(f"{method} seed {seed}: fp32 {row['fp32']:.2f} %, bf16 {row['bf16']:.2f} % "
              f"({row['fp32_seconds']:.1f} s, {row['bf16_seconds']:.1f} s)", flush=True)
    effect, low, high, _, _ = paired_interval([[r["bf16"] - r["fp32"] for r in rows]])
    mean = {p: sum(r[f"{p}_seconds"] for r in rows) / len(rows) for p in ("fp32", "bf16")}
    return {"method": method, "seeds": seeds, "rows": rows, "difference": effect, "low": low,
            "high": high, "fp32_seconds": mean["fp32"], "bf16_seconds": mean["bf16"]}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--methods", default="DM,DC,DSA")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    params = study.load_profile(args.profile, args.overrides)["00_preliminary"]
    seeds = [int(s) for s in args.seeds.split(",")]
    results = [compare_precisions(params, m.strip().upper(), seeds)
               for m in args.methods.split(",")]
    print("\n| method | seeds | bf16 − fp32 (points) | 95 % interval | distill s fp32 | bf16 |")
    print("|---|---:|---:|---|---:|---:|")
    for r in results:
        print(f"| {r['method']} | {len(seeds)} | {r['difference']:+.2f} | "
              f"[{r['low']:+.2f}, {r['high']:+.2f}] | {r['fp32_seconds']:.1f} | "
              f"{r['bf16_seconds']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
