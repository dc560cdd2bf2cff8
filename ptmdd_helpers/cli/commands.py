"""The ``ptmdd`` command line: a thin face over the package's functions."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from .checks import user_errors
from .options import (
    add_device_argument,
    add_evaluation_arguments,
    add_location_arguments,
    add_method_arguments,
    check_evaluation_counts,
    check_evaluation_options,
    check_options,
    check_snapshots,
    csv_list,
    guidance_from_args,
    int_csv_list,
    method_overrides,
    print_snapshots,
    workspace_from_args,
)
from .options import evaluate_and_print as _evaluate_and_print

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Callable]]] = {}


def command(name: str, help_text: str):
    """Register a subcommand: the decorated function adds arguments and returns the runner."""

    def decorator(add_arguments):
        COMMANDS[name] = (help_text, add_arguments)
        return add_arguments

    return decorator


@command("models", "list the registered architectures")
def _models(parser: argparse.ArgumentParser):
    def run(args: argparse.Namespace) -> int:
        from ..networks.models import list_models

        print("\n".join(list_models()))
        return 0

    return run


@command("datasets", "list the registered datasets with their shapes")
def _datasets(parser: argparse.ArgumentParser):
    def run(args: argparse.Namespace) -> int:
        from ..data.datasets import get_info, list_datasets

        print(f"{'name':<14}{'channels':>9}{'size':>9}{'classes':>9}  source")
        for name in list_datasets():
            info = get_info(name)
            size = "x".join(map(str, info.image_size))
            where = "package (offline)" if info.offline else "data root / download"
            print(f"{name:<14}{info.channels:>9}{size:>9}{info.num_classes:>9}  {where}")
        print("Each NAME also has NAME-val: its training set with a tenth of each class held out as "
              "the test set, for choosing settings without the test set.")
        return 0

    return run


@command("pretrain", "train a pool of pre-trained models (resumable; complete members skipped)")
def _pretrain(parser: argparse.ArgumentParser):
    from ..pools.members import NAMED_RECIPES
    from ..pools.members import PAPER_POOL_RECIPE as R

    parser.add_argument("--source", required=True, help="source dataset, e.g. FashionMNIST")
    parser.add_argument("--arch", required=True, type=csv_list,
                        help="architecture(s), comma separated, e.g. ConvNet,AlexNet")
    parser.add_argument("--num", type=int, default=1, help="members per architecture (seeds 0..N-1)")
    parser.add_argument("--recipe", choices=tuple(NAMED_RECIPES), default="paper",
                        help="paper: the study's PTMs (150 epochs, SGD momentum 0.9, wd 0.005, "
                             "lr x0.1 at 50,100); mtt: MTT's expert trajectories (50 epochs, plain "
                             "SGD lr 0.01, no momentum or weight decay), kept in <arch>/mtt/. The "
                             "options below replace the recipe's values")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {R.epochs} (mtt: 50)")
    parser.add_argument("--lr", type=float, default=None, help=f"default {R.lr}")
    parser.add_argument("--momentum", type=float, default=None, help=f"default {R.momentum} (mtt: 0)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help=f"default {R.weight_decay} (mtt: 0)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {R.batch_size}")
    parser.add_argument("--milestones", type=int_csv_list, default=None,
                        help="epochs at which the learning rate is multiplied by 0.1 (default "
                             "50,100; mtt: none)")
    parser.add_argument("--keep-epochs", type=int_csv_list, default=None,
                        help="keep checkpoints only of these epochs (default: every epoch)")
    parser.add_argument("--pool-root", default=None, help="default: $PTMDD_POOLS, else runs/pools")
    parser.add_argument("--data-root", default=None, help="default: $PTMDD_DATA, else data")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_argument(parser)

    def run(args: argparse.Namespace) -> int:
        from ..pools.members import MemberSpec, pool_recipe, resolve_pool_root
        from ..pools.pretrain import train_pool

        base = NAMED_RECIPES[args.recipe]
        given = {name: getattr(args, name) for name in
                 ("epochs", "lr", "momentum", "weight_decay", "batch_size", "milestones")}
        values = {name: getattr(base, name) if value is None else value
                  for name, value in given.items()}
        values["milestones"] = tuple(values["milestones"])
        recipe = pool_recipe(**values)  # validates: a bad value is an error naming the flag, exit 2
        logs = train_pool(
            args.source, args.arch, args.num, recipe, keep_epochs=args.keep_epochs,
            root=args.pool_root, data_root=args.data_root, device=args.device,
            progress=not args.quiet, recipe_name=args.recipe,
        )
        root = resolve_pool_root(args.pool_root)
        for (arch, seed), log in logs.items():
            last = log.epochs[-1] if log.epochs else {}
            folder = MemberSpec(args.source, arch, seed, recipe_name=args.recipe).directory(root)
            print(
                f"{args.source}/{arch}/seed{seed}: {log.completed} epochs, final test accuracy "
                f"{last.get('test_acc', float('nan')):.4f}  ({folder})"
            )
        return 0

    return run


def _method_names() -> list[str]:
    from ..distill import list_methods

    return list_methods()


@command("distill", "distill a synthetic set (optionally PTM-guided), store and evaluate it")
def _distill(parser: argparse.ArgumentParser):
    from ..distill.spec import INITS
    from ..networks.training import PRECISIONS

    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True, type=str.upper,
                        help="a registered method (any case): " + ", ".join(_method_names()))
    parser.add_argument("--ipc", type=int, required=True, help="images per class")
    parser.add_argument("--model", default="ConvNet", help="network used for matching")
    parser.add_argument("--iterations", type=int, default=None,
                        help="default: 1000 (DC/DSA), 20000 (DM), 5000 (MTT)")
    parser.add_argument("--init", choices=INITS, default=None,
                        help="default: noise (DC/DSA), real (DM/MTT)")
    parser.add_argument("--lr-img", type=float, default=None,
                        help="default: 0.1 (DC/DSA), 1.0 (DM), 1000 (MTT)")
    parser.add_argument("--lr-net", type=float, default=None, help="default 0.01")
    parser.add_argument("--batch-real", type=int, default=None, help="real images per class")
    parser.add_argument("--outer-loop", type=int, default=None, help="default: by IPC")
    parser.add_argument("--inner-loop", type=int, default=None, help="default: by IPC")
    parser.add_argument("--seed", type=int, default=0, help="replicate index")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default=None,
                        help="fp32 (default) or bf16: the matching networks' convolutions and "
                             "matmuls in bfloat16 under autocast (its own run id; "
                             "benchmarks/README.md has its speed and accuracy)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--clom", action="store_true", help="guide with CLoM (same label space)")
    kind.add_argument("--cclom", action="store_true", help="guide with CCLoM (any source)")
    parser.add_argument("--pool", type=csv_list, default=None,
                        help="PTM pool architectures of --clom/--cclom, comma separated (default "
                             "ConvNet); MTT's experts are of --model")
    parser.add_argument("--pool-size", type=int, default=1, help="members per architecture")
    parser.add_argument("--pool-epoch", type=int, default=None,
                        help="checkpoint epoch; 0: the untrained initializations (default: the epoch "
                             "every member has completed)")
    parser.add_argument("--source", default=None, help="dataset of the PTMs (default: target)")
    parser.add_argument("--alphas", default="100",
                        help="α, one value or one per pool architecture (default 100)")
    parser.add_argument("--cclom-real-batch", "--cclom-batch", dest="cclom_real_batch", type=int,
                        default=None,
                        help="real images per CCLoM use (default 8196, capped at the dataset)")
    parser.add_argument("--ptm-only", action="store_true", help="drop the DD loss (α study)")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="iterations between resumable checkpoints")
    parser.add_argument("--snapshots", type=int_csv_list, default=None, metavar="K,K",
                        help="also store the set after these iterations, each as the run of "
                             "this spec with that many iterations (e.g. 100,300)")
    parser.add_argument("--no-eval", action="store_true", help="distill only")
    add_method_arguments(parser)
    add_evaluation_arguments(parser)
    add_location_arguments(parser)

    def run(args: argparse.Namespace) -> int:

        from ..checks import check_number
        from ..data.datasets import get_info
        from ..distill import make_spec
        from ..networks.models import check_models
        from ..store.runs import distill_run

        # every option is checked before the store, the pools or the data are touched
        check_options(args, ipc=1, iterations=1, batch_real=1, outer_loop=1, inner_loop=1,
                      seed=0, pool_size=1, pool_epoch=0, cclom_real_batch=1, checkpoint_every=1)
        for dest in ("lr_img", "lr_net"):
            if getattr(args, dest) is not None:
                check_number(getattr(args, dest), f"--{dest.replace('_', '-')}", positive=True)
        get_info(args.dataset)
        check_models([args.model], "--model")
        check_evaluation_options(args, args.method)
        own = method_overrides(args)  # the method's own settings (MTT: --syn-steps, ...)
        guidance = guidance_from_args(args)
        spec = make_spec(
            args.dataset, args.method, args.ipc, model=args.model, iterations=args.iterations,
            init=args.init, lr_img=args.lr_img, lr_net=args.lr_net, batch_real=args.batch_real,
            outer_loop=args.outer_loop, inner_loop=args.inner_loop, guidance=guidance,
            seed=args.seed, precision=args.precision, **own,
        )
        check_snapshots(args.snapshots, spec.iterations)
        workspace = workspace_from_args(args)
        run = distill_run(spec, workspace)
        print(f"distillation {run.id}: {run.metrics['iterations']} iterations in "
              f"{run.metrics['distill_seconds']:.1f} s, final loss {run.metrics['final_loss']}"
              f"  ({run.path})")
        print_snapshots(spec, args.snapshots or (), workspace)
        if not args.no_eval:
            _evaluate_and_print(spec, args, workspace)
        return 0

    return run


@command("evaluate", "evaluate a stored distillation (cross-architecture) or a real baseline")
def _evaluate(parser: argparse.ArgumentParser):
    parser.add_argument("run", nargs="?", default=None, help="run id or path of a distillation")
    parser.add_argument("--random-real", nargs=2, metavar=("DATASET", "IPC"), default=None,
                        help="evaluate a random real subset instead")
    parser.add_argument("--whole", metavar="DATASET", default=None,
                        help="evaluate the whole training set instead")
    parser.add_argument("--seed", type=int, default=0, help="replicate of the random subset")
    add_evaluation_arguments(parser)
    add_location_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        from ..data.datasets import get_info
        from ..distill import DistillSpec
        from ..store.evaluations import stored_distillation, training_set
        from ..store.runs import RealSubsetSpec, WholeDatasetSpec
        from .checks import check_one_subject

        check_options(args, seed=0)
        check_one_subject(args)
        check_evaluation_counts(args)  # before the store is read
        workspace = workspace_from_args(args)
        if args.random_real:
            dataset, ipc = args.random_real
            get_info(dataset)
            if not ipc.isdigit() or int(ipc) < 1:
                raise ValueError(f"--random-real expects DATASET IPC with IPC a whole number ≥ 1 "
                                 f"(images per class), got {ipc!r}")
            subject = RealSubsetSpec(dataset, int(ipc), args.seed)
        elif args.whole:
            subject = WholeDatasetSpec(args.whole)
        elif args.run:
            subject = stored_distillation(args.run, workspace)
            if not isinstance(subject, DistillSpec):
                raise ValueError(f"{args.run} is not a distillation run")
            if workspace.recompute:  # options first, then a failing distillation is recomputed
                check_evaluation_options(args, subject.method, subject.dataset)
                training_set(subject, workspace)
        else:
            raise ValueError("give a run id or path, --random-real DATASET IPC, or --whole DATASET")
        _evaluate_and_print(subject, args, workspace)
        return 0

    return run


@command("runs", "list stored runs, show one, or check (and seal) what the store serves")
def _runs(parser: argparse.ArgumentParser):
    parser.add_argument("action", choices=("list", "show", "check"), nargs="?", default="list")
    parser.add_argument("run", nargs="?", default=None,
                        help="run id or path (show; check: only this run)")
    parser.add_argument("--kind", default=None, help="distill or evaluation")
    parser.add_argument("--store", default=None, help="default: $PTMDD_RUNS, else runs/store")
    parser.add_argument("--seal", action="store_true",
                        help="check: write checksums into legacy runs (after loading each .pt)")

    def run(args: argparse.Namespace) -> int:
        from ..store.runstore import RunStore
        from .checks import check_run_kind
        from .listing import check_runs, list_runs, show_run

        store = RunStore(args.store)
        check_run_kind(store, args.kind)
        if args.action == "show":
            return show_run(store, args.run)
        if args.action == "check":
            return check_runs(store, args.run, args.kind, args.seal)
        return list_runs(store, args.kind)

    return run


@command("export", "write a distillation's images and labels as a .pt of tensors and a PNG grid")
def _export(parser: argparse.ArgumentParser):
    parser.add_argument("run", help="run id or path of a distillation")
    parser.add_argument("--format", choices=("pt", "png", "both"), default="both",
                        help="pt (tensors, torch.load(weights_only=True)), png (grid) or both")
    parser.add_argument("--out", required=True, help="folder for <run id>.pt / <run id>.png")
    parser.add_argument("--store", default=None, help="default: $PTMDD_RUNS, else runs/store")

    def run(args: argparse.Namespace) -> int:
        from ..store.export import export_run
        from ..store.runstore import RunStore

        for path in export_run(RunStore(args.store).load(args.run), args.out, args.format):
            print(path)
        return 0

    return run


@command("study", "run the study notebooks of a profile (papermill), or show its size (--dry-run)")
def _study(parser: argparse.ArgumentParser):
    parser.add_argument("--profile", default="smoke",
                        help="parameters/<profile>.yaml, or a path to a profile (default smoke)")
    parser.add_argument("--only", type=csv_list, default=None,
                        help="notebooks to run, e.g. 03_epoch,04_domain (or 03,04; default all)")
    parser.add_argument("--executor", choices=("local", "slurm"), default=None,
                        help="local worker processes, or submitit (default: the profile's)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (local) or most jobs per stage (slurm)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a profile value (YAML value; dotted keys; a notebook name "
                             "first limits it to that notebook), e.g. --set seeds=[0,1,2]")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what the profile implies and what is stored; run nothing")
    parser.add_argument("--estimate", action="store_true",
                        help="with --dry-run: time each shape of work briefly on this device and "
                             "print the estimated hours of what is missing")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")

    def run(args: argparse.Namespace) -> int:
        from ..study import dry_run, run_study

        if args.estimate and not args.dry_run:
            raise ValueError("--estimate goes with --dry-run: ptmdd study --profile P --dry-run "
                             "--estimate")
        if args.dry_run:
            overrides = list(args.overrides)
            dry_run(args.profile, overrides, only=args.only, estimate=args.estimate)
            return 0
        result = run_study(args.profile, only=args.only, executor=args.executor,
                           workers=args.workers, overrides=args.overrides,
                           verbose=not args.quiet)
        print(f"study {args.profile}: {len(result['notebooks'])} notebooks in "
              f"{result['seconds']:.0f} s (tasks: {result['counts']}); "
              f"index {result['index']}")
        return 0

    return run


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    """Build the argument parser and the map from subcommand to runner."""
    parser = argparse.ArgumentParser(
        prog="ptmdd", description="Pre-trained models in dataset distillation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    runners = {}
    for name, (help_text, add_arguments) in COMMANDS.items():
        runners[name] = add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ptmdd`` console script."""
    from ..malloc import tune_malloc

    parser, runners = build_parser()
    args = parser.parse_args(argv)
    tune_malloc()  # freed activations reused, not re-faulted (ptmdd_helpers/malloc.py)
    # warnings are shown as one line each, after the command; an error's paragraph replaces them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            code = runners[args.command](args)
        except user_errors() as error:
            print(f"ptmdd {args.command}: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"ptmdd {args.command}: interrupted; kept: every finished run, pool epoch and "
                  "evaluation network, and a distillation's last checkpoint (every "
                  "--checkpoint-every iterations); the same command resumes from there",
                  file=sys.stderr)
            return 130
    for warning in caught:
        print(f"ptmdd {args.command}: warning: {warning.message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
