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
        if "lr" in run.metrics:
            precision += f", learned lr {run.metrics['lr']:.4g}"
        print(f"evaluation {run.id}: {arch} ({protocol.epochs} epochs, augment "
              f"{protocol.augment}{precision}): "
              f"{plus_minus(summary['mean'], summary['std'], summary['n'])} % over networks "
              f"(sample SD)  [{seconds:.1f} s training]")


def add_mtt_arguments(parser: argparse.ArgumentParser) -> None:
    """Add MTT's options to ``ptmdd distill`` (defaults: docs/method.md#mtt-trajectory-matching)."""
    group = parser.add_argument_group("MTT (trajectory matching; experts: ptmdd pretrain --recipe mtt)")
    group.add_argument("--experts", dest="n_experts", type=int, default=None,
                       help="expert trajectories matched: members 0..N-1 of --model on --dataset "
                            "(default: every expert found under the pool root)")
    group.add_argument("--syn-steps", type=int, default=None, help="student steps N (default by IPC)")
    group.add_argument("--expert-epochs", type=int, default=None,
                       help="expert epochs M matched (default by IPC)")
    group.add_argument("--max-start-epoch", type=int, default=None,
                       help="start epochs drawn from 0..T+-1 (default by IPC)")
    group.add_argument("--lr-lr", type=float, default=None,
                       help="learning rate of the learned student lr (default by IPC)")
    group.add_argument("--lr-init", type=float, default=None,
                       help="the student lr's start (default: the experts' lr, 0.01)")
    group.add_argument("--batch-syn", type=int, default=None,
                       help="synthetic images per student step (default 0: all)")


def mtt_overrides(args: argparse.Namespace) -> dict:
    """The ``make_spec`` overrides of MTT's options (checked); ``{}`` for another method."""
    from .checks import check_int, check_number
    from .experts import count_experts

    names = ("n_experts", "syn_steps", "expert_epochs", "max_start_epoch", "lr_lr", "lr_init",
             "batch_syn")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.method.upper() != "MTT":
        if given:
            flags = ", ".join(f"--{n.replace('_', '-')}" for n in given).replace("n-experts",
                                                                               "experts")
            raise ValueError(f"{flags} configure MTT's trajectory matching, but --method is "
                             f"{args.method}; drop them or use --method MTT")
        return {}
    for name, value in given.items():
        flag = "--experts" if name == "n_experts" else f"--{name.replace('_', '-')}"
        if name in ("lr_lr", "lr_init"):
            check_number(value, flag, positive=True)
        else:
            check_int(value, flag, minimum=0 if name == "batch_syn" else 1)
    if args.pool is not None and not (args.clom or args.cclom) and list(args.pool) != [args.model]:
        raise ValueError(
            f"--pool {','.join(args.pool)} without --clom/--cclom: MTT matches expert "
            f"trajectories of its --model ({args.model}) on --dataset, so --pool, if given, must "
            f"name that architecture; give --model {args.pool[0]} to match its experts, or add "
            f"--clom/--cclom to guide with that PTM pool")
    if "n_experts" not in given:  # every expert found; none: the error names the pretrain command
        given["n_experts"] = max(1, count_experts(args.dataset, args.model, "mtt", args.pool_root))
    return given


def guidance_from_args(args: argparse.Namespace):
    """The ``GuidanceSpec`` of --clom/--cclom and the pool options (checked; its run id names the
    pool on disk), or ``None`` without guidance."""
    from dataclasses import replace

    from .checks import check_models
    from .data import get_info
    from .guidance import DEFAULT_CCLOM_REAL_BATCH, GuidanceSpec, parse_alphas, validate_guidance
    from .pools import final_epoch, ptm_epoch, stored_identity

    guidance = None
    if args.clom or args.cclom:
        source = args.source or args.dataset
        get_info(source)
        if args.pool is None:
            args.pool = ["ConvNet"]
        if not args.pool:
            raise ValueError("--pool needs at least one architecture, e.g. --pool ConvNet")
        check_models(args.pool, "--pool")
        alphas = parse_alphas(args.alphas, "--alphas")
        epoch = args.pool_epoch  # None: the pool's final epoch (one resolver, pools.ptm_epoch)
        if epoch is None:
            epoch = ptm_epoch(None, final_epoch(source, tuple(args.pool), args.pool_size,
                                                args.pool_root))
        guidance = GuidanceSpec(
            kind="clom" if args.clom else "cclom", source=source, archs=tuple(args.pool),
            n_models=args.pool_size, epoch=epoch,
            alphas=alphas,
            real_batch=args.cclom_real_batch or DEFAULT_CCLOM_REAL_BATCH, ptm_only=args.ptm_only,
        )
        validate_guidance(guidance, args.dataset)
        # the run id names the pool: the identity of the recipe its members were trained with
        guidance = replace(guidance, pool_recipe=stored_identity(
            source, guidance.archs, args.pool_size, epoch, args.pool_root))
    elif args.ptm_only:
        raise ValueError("--ptm-only needs --clom or --cclom")
    return guidance
