"""Pieces of the ``ptmdd`` command line kept out of :mod:`ptmdd_helpers.cli` (which stays short)."""

from __future__ import annotations

import argparse

from .spread import plus_minus


def evaluate_and_print(subject, args: argparse.Namespace, workspace) -> None:
    """Evaluate ``subject`` on each --eval-archs architecture and print one line per run."""
    from .cli import check_evaluation_options
    from .runs import EvaluationSpec, evaluation_run

    method = subject.method if hasattr(subject, "method") else "DC"
    dataset = getattr(subject, "dataset", None)
    specs = [EvaluationSpec(subject, arch, args.eval_nets,  # all checked before any runs
                            check_evaluation_options(args, method, dataset, arch))
             for arch in args.eval_archs or [getattr(subject, "model", "ConvNet")]]
    for spec in specs:
        arch, protocol = spec.arch, spec.protocol
        run = evaluation_run(spec, workspace)
        summary = run.metrics["summary"]
        seconds = sum(row["seconds"] for row in run.metrics["rows"])
        precision = "" if protocol.precision == "fp32" else f", {protocol.precision}"
        print(f"evaluation {run.id}: {arch} ({protocol.epochs} epochs, augment "
              f"{protocol.augment}{precision}): "
              f"{plus_minus(summary['mean'], summary['std'], summary['n'])} % over networks "
              f"(sample SD)  [{seconds:.1f} s training]")
