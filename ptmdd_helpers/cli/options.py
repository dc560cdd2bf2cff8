"""The options shared by ``ptmdd`` commands (locations, device, evaluation, each method's own),
their checks, and the printing of an evaluation; :mod:`.commands` defines the commands."""

from __future__ import annotations

import argparse

from ..spread import plus_minus

# What each integer option's smallest value means where "at least N" alone would not say the fix.
_OPTION_FIXES = {
    "pool_epoch": "give 0 (the untrained initializations) or a positive epoch the pool has "
                  "trained to, or leave --pool-epoch out for the pool's last epoch",
    "seed": "the replicate index is 0, 1, 2, …",
    "iterations": "a distillation needs at least one iteration",
    "checkpoint_every": "the number of iterations between resumable checkpoints",
}


def check_options(args: argparse.Namespace, **minimums: int) -> None:
    """Raise ``ValueError`` naming the option for an integer option given below its minimum
    (options left at ``None`` are not checked)."""
    from ..checks import check_int

    for dest, minimum in minimums.items():
        value = getattr(args, dest, None)
        if value is not None:
            check_int(value, f"--{dest.replace('_', '-')}", minimum=minimum,
                      fix=_OPTION_FIXES.get(dest, ""))


def check_evaluation_counts(args: argparse.Namespace) -> None:
    """Check --device, --eval-nets (1 … MAX_EVAL_NETS), --eval-epochs and --eval-archs."""
    from ..checks import check_eval_nets
    from ..networks.models import check_models
    from ..networks.training import resolve_device

    resolve_device(args.device)
    check_eval_nets(args.eval_nets, "--eval-nets")
    check_options(args, eval_epochs=1)
    if args.eval_archs:
        check_models(args.eval_archs, "--eval-archs")


def check_evaluation_options(args: argparse.Namespace, method: str, dataset: str | None = None,
                             arch: str | None = None):
    """Check --eval-* and --device before anything is computed; return the protocol (the DC
    augmentation default follows the reference for ``dataset`` and the evaluation ``arch``)."""
    from ..distill import protocol_for

    check_evaluation_counts(args)
    overrides = {"epochs": args.eval_epochs, "augment": args.eval_augment,
                 "precision": args.eval_precision}
    return protocol_for(method, dataset=dataset, arch=arch,
                        **{k: v for k, v in overrides.items() if v is not None})


def evaluate_and_print(subject, args: argparse.Namespace, workspace) -> None:
    """Evaluate ``subject`` on each --eval-archs architecture and print one line per run."""
    from ..store.evaluations import evaluation_run
    from ..store.runs import EvaluationSpec

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


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """Add each registered method's own settings to ``ptmdd distill``, one group per method (the
    flags come from the fields of the method's options, :mod:`ptmdd_helpers.distill.methods`)."""
    import dataclasses

    from ..distill import REGISTRY
    from ..distill.methods import HELP

    added: set[str] = set()
    for method in REGISTRY.values():
        fields = [f for f in (dataclasses.fields(method.options) if method.options else ())
                  if method.option_flag(f.name) and method.option_flag(f.name) not in added]
        if not fields:
            continue
        group = parser.add_argument_group(f"{method.name} ({method.description or 'its settings'})")
        for item in fields:
            flag = method.option_flag(item.name)
            added.add(flag)
            kind = type(item.default) if item.default is not None else str
            group.add_argument(flag, dest=item.name, type=kind, default=None,
                               help=item.metadata.get(HELP, f"{method.name}'s {item.name}"))


def method_overrides(args: argparse.Namespace) -> dict:
    """The ``make_spec`` overrides of the chosen method's own options; options of another
    method are an error naming them."""
    from ..distill import REGISTRY, get_method

    chosen = get_method(args.method)
    given, foreign = {}, {}
    for method in REGISTRY.values():
        for name in method.option_names():
            flag = method.option_flag(name)
            if flag and getattr(args, name, None) is not None:
                if name in chosen.option_names():
                    given[name] = getattr(args, name)
                else:
                    foreign.setdefault(flag, method.name)
    if foreign:
        owners = ", ".join(dict.fromkeys(foreign.values()))
        raise ValueError(f"{', '.join(foreign)} configure {owners}'s own settings, but --method is "
                         f"{chosen.name}; drop them or use --method {next(iter(foreign.values()))}")
    return chosen.cli_resolve(args, given) if chosen.cli_resolve is not None else given


def guidance_from_args(args: argparse.Namespace):
    """The ``GuidanceSpec`` of --clom/--cclom and the pool options (checked; its run id names the
    pool on disk), or ``None`` without guidance."""
    from dataclasses import replace

    from ..data.datasets import get_info
    from ..networks.models import check_models
    from ..pools.guidance import check_real_batch, make_guidance, parse_alphas, validate_guidance
    from ..pools.pool import final_epoch, ptm_epoch, stored_identity

    guidance = None
    if args.clom or args.cclom:
        check_real_batch("clom" if args.clom else "cclom", args.cclom_real_batch)
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
        guidance = make_guidance("clom" if args.clom else "cclom", source, args.pool,
                                 args.pool_size, epoch, alphas, real_batch=args.cclom_real_batch,
                                 ptm_only=args.ptm_only)
        validate_guidance(guidance, args.dataset)
        # the run id names the pool: the identity of the recipe its members were trained with
        guidance = replace(guidance, pool_recipe=stored_identity(
            source, guidance.archs, args.pool_size, epoch, args.pool_root))
    elif args.ptm_only:
        raise ValueError("--ptm-only needs --clom or --cclom")
    elif args.cclom_real_batch is not None:
        raise ValueError("--cclom-real-batch sets CCLoM's real images; it needs --cclom")
    return guidance


def csv_list(text: str) -> list[str]:
    """``a, b,,c`` as ``['a', 'b', 'c']`` (an argparse ``type``)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def int_csv_list(text: str) -> list[int]:
    """``1,2`` as ``[1, 2]`` (an argparse ``type``)."""
    return [int(part) for part in csv_list(text)]


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--device auto|cpu|cuda``."""
    parser.add_argument(
        "--device", default="auto",
        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: auto)",
    )


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --data-root, --pool-root, --store, --device and --quiet."""
    parser.add_argument("--data-root", default=None, help="default: $PTMDD_DATA, else data")
    parser.add_argument("--pool-root", default=None, help="default: $PTMDD_POOLS, else runs/pools")
    parser.add_argument("--store", default=None, help="run store; default: $PTMDD_RUNS, else runs/store")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--recompute", action="store_true",
                        help="a stored run that fails verification (see `ptmdd runs check`) is "
                             "moved to <store>/.quarantine/ and computed again")
    parser.add_argument("--no-compile", dest="compile", action="store_const", const=False,
                        default=None,
                        help="train evaluation networks eagerly (default: ConvNetW32 on CPU in "
                             "fp32 trains compiled from 100 images per batch, i.e. IPC >= 10, "
                             "after 8-20 s of compilation once per process; also "
                             "PTMDD_COMPILE=0)")
    add_device_argument(parser)


def workspace_from_args(args: argparse.Namespace):
    """The :class:`~ptmdd_helpers.store.runs.Workspace` of the location options in ``args``."""
    from ..store.runs import Workspace

    return Workspace.from_settings({**vars(args), "progress": not args.quiet})


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the evaluation protocol options."""
    from ..data.eval_augment import EVAL_AUGMENTS
    from ..networks.training import PRECISIONS

    parser.add_argument("--eval-archs", type=csv_list, default=None,
                        help="architectures to evaluate on (default: the distillation model)")
    parser.add_argument("--eval-nets", type=int, default=20,
                        help="fresh networks per architecture (default 20)")
    parser.add_argument("--eval-epochs", type=int, default=None,
                        help="training epochs (default: 300 for DC, 1000 for DSA/DM/MTT; MTT's "
                             "networks train at the lr its distillation learned)")
    parser.add_argument("--eval-augment", default=None,
                        choices=EVAL_AUGMENTS,
                        help="augmentation while training (default: dsa for DSA/DM; for DC as "
                             "the reference: crop_noise for ConvNetBN, crop_scale_rotate on "
                             "MNIST/MNIST5k, else none)")
    parser.add_argument("--eval-precision", choices=tuple(PRECISIONS), default=None,
                        help="fp32 (default) or bf16: convolutions in bfloat16 under autocast, "
                             "faster on CPUs with AVX-512 BF16 and on GPUs")


def check_snapshots(snapshots: list[int] | None, iterations: int) -> None:
    """Raise ``ValueError`` unless every ``--snapshots`` count is from 1 to ``iterations`` − 1."""
    wrong = [k for k in snapshots or () if not 0 < k < iterations]
    if wrong:
        raise ValueError(f"--snapshots {','.join(map(str, wrong))}: each snapshot is an iteration "
                         f"count from 1 to {iterations - 1} (below --iterations {iterations}, "
                         f"whose set is the run itself)")


def print_snapshots(spec, snapshots, workspace) -> None:
    """Print the run id of each snapshot of ``spec``'s distillation, or why it is not stored."""
    from dataclasses import replace

    for k in snapshots:
        found = workspace.store.get(replace(spec, iterations=k))
        print(f"  snapshot at {k} iterations: " + (
            f"{found.id}" if found is not None else
            f"not stored (the {spec.iterations}-iteration run was already stored; `ptmdd "
            f"distill --iterations {k}` with the same options computes it)"))

