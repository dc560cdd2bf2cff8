"""Pools of pre-trained models (PTMs): train, resume, and load them safely.

On-disk layout (the pool root is an argument, else ``$PTMDD_POOLS``, else ``runs/pools``)::

    <pool root>/<source>/<arch>/seed<k>/
        recipe.json          training recipe and dataset shape (everything but the epoch count)
        log.json             per completed epoch: train loss/accuracy, test accuracy, seconds
        epoch_<e>.pt         {"state_dict", "meta"} after epoch e (every epoch, or a chosen set)
        epoch_0.pt           the untrained initialization, written only when asked for
                             (:func:`write_initial_checkpoint`; the "untrained PTM" of the study)
        resume.pt            model, optimizer and scheduler state after the last complete epoch,
                             its number, its log entry and recipe

A pool member is identified by (source, arch, seed, named recipe) (``MemberSpec.identity``; its
folder, ``MemberSpec.key``, names it in task keys and logs); its checkpoints by epoch. The learning-rate
milestones are absolute epochs, so a member trained for 3 epochs is the first 3 epochs of a
150-epoch member with the same recipe, and asking for more epochs continues it. Every file is
written atomically; checkpoints are loaded with ``weights_only=True``, so a pool from elsewhere can
carry no code. Seeds are explicit: member ``k`` of a pool of ``n`` has seed ``k`` (0 … n−1), which
fixes its initialization and its data order.

Write order of epoch ``e`` (each write atomic): ``epoch_<e>.pt`` (if kept), then ``resume.pt``
(carrying epoch ``e``'s log entry), then ``log.json``. A crash before ``resume.pt`` leaves the
state after epoch e−1, which retrains epoch e to the same bits; a crash after it leaves
``resume.pt`` one epoch ahead of the log, and the next run appends resume.pt's entry to the log
instead of training that epoch again. Any other disagreement is refused. Members whose weights
turn non-finite are refused while training and when loaded (:mod:`.pool_members` has the checks).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock
from torch import nn
from tqdm.auto import tqdm

from .atomic import atomic_torch_save, atomic_write_text
from .data import get_info, load_dataset
from .models import create_model
from .pool_members import (
    MTT_EXPERT_RECIPE,
    NAMED_RECIPES,
    PAPER_POOL_RECIPE,
    UNTRAINED,
    MemberLog,
    MemberSpec,
    MissingPoolError,
    PoolError,
    check_member,
    check_pool_args,
    checkpoint_problems,
    log_problems,
    member_complete,
    nonfinite_tensors,
    pool_recipe,
    read_log,
    read_member_log,
    recipe_identity,
    recipe_key,
    resolve_pool_root,
    safe_load,
    validate_recipe,
)
from .seeding import make_generator
from .training import (
    TrainRecipe,
    accuracy,
    make_optimizer,
    resolve_device,
    seeded_model,
    train_epoch,
)
from .work import record_computed

__all__ = [
    "MTT_EXPERT_RECIPE", "NAMED_RECIPES", "PAPER_POOL_RECIPE", "UNTRAINED", "MemberLog",
    "MemberSpec", "MissingPoolError", "PoolError",
    "TrainRecipe", "build_member_model", "check_identity", "check_member", "check_pool_args",
    "final_epoch", "initial_path", "ptm_epoch", "load_member", "load_pool", "member_complete", "member_log",
    "pool_recipe", "pretrain_command", "read_member_log", "recipe_identity", "resolve_pool_root",
    "safe_load", "stored_identity", "train_member", "train_pool", "validate_recipe",
    "write_initial_checkpoint",
]


def stored_identity(
    source: str, archs: Sequence[str], n_models: int, epoch: int, root: str | Path | None = None
) -> str:
    """The identity of the pool on disk (members 0 … n−1 of each architecture); raises
    :class:`MissingPoolError` with the command that makes a missing member, or
    :class:`PoolError` if the members were trained with different recipes."""
    check_pool_args(archs, n_models)
    if int(epoch) == 0:
        return UNTRAINED
    base = resolve_pool_root(root)
    found: dict[str, str] = {}
    for arch in archs:
        for seed in range(n_models):
            log = read_log(MemberSpec(source, arch, seed).directory(base))
            if log is None:
                raise MissingPoolError(
                    f"pool {source} has no member {arch}/seed{seed} under {base}; create it "
                    f"with: {pretrain_command(source, archs, n_models, max(epoch, 1), root)}"
                )
            found[f"{arch}/seed{seed}"] = recipe_identity(log.recipe["recipe"])
    if len(set(found.values())) > 1:
        raise PoolError(
            f"the members of pool {source} under {base} were trained with different recipes "
            f"({', '.join(f'{m}: {i}' for m, i in found.items())}); retrain them with one "
            f"recipe or use another --pool-root"
        )
    return next(iter(found.values()))


def check_identity(
    source: str, archs: Sequence[str], n_models: int, epoch: int, identity: str,
    root: str | Path | None = None,
) -> None:
    """Raise :class:`PoolError` unless every member on disk was trained with the recipe whose
    identity is ``identity`` (epoch 0, the untrained pool, needs none)."""
    if int(epoch) == 0:
        return
    stored = stored_identity(source, archs, n_models, epoch, root)
    if stored != identity:
        raise PoolError(
            f"the pool {source} ({', '.join(archs)}) under {resolve_pool_root(root)} was trained "
            f"with recipe {stored}, but this run asks for pool recipe {identity}: refusing to "
            f"mix them (a result guided by one pool must not be served or resumed for another). "
            f"Point --pool-root at the pool trained with that recipe, or retrain it"
        )


def build_member_model(arch: str, source: str, seed: int) -> nn.Module:
    """Create the freshly initialized network of pool member (source, arch, seed)."""
    info = get_info(source)
    return seeded_model(
        lambda: create_model(arch, info.channels, info.num_classes, info.image_size),
        "pool-init", source, arch, seed,
    )


def initial_path(member: MemberSpec, root: str | Path | None = None) -> Path:
    """The epoch-0 checkpoint (the untrained initialization) of ``member``."""
    return member.directory(resolve_pool_root(root)) / "epoch_0.pt"


def _save_epoch_checkpoint(
    model: nn.Module, member: MemberSpec, epoch: int, test_acc: float, path: Path
) -> None:
    """Write ``{"state_dict", "meta"}`` of ``member`` after ``epoch``: what ``load_member`` reads."""
    meta = {"source": member.source, "arch": member.arch, "seed": member.seed, "epoch": epoch,
            "test_acc": test_acc}
    atomic_torch_save({"state_dict": model.state_dict(), "meta": meta}, path)


def write_initial_checkpoint(member: MemberSpec, root: str | Path | None = None) -> Path:
    """Save the untrained network of ``member`` as ``epoch_0.pt`` (the initialization it trains from)."""
    path = initial_path(member, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent) + ".lock"):
        if not path.is_file():
            model = build_member_model(member.arch, member.source, member.seed)
            _save_epoch_checkpoint(model, member, 0, -1.0, path)
    return path


def train_member(
    spec: MemberSpec,
    *,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> MemberLog:
    """Train (or resume, or skip) one pool member up to ``spec.recipe.epochs``; return its log.

    A file lock beside the member's folder keeps two processes from training it at once.
    """
    from .models import list_models

    validate_recipe(spec.recipe)
    resolve_device(device)
    get_info(spec.source)  # unknown names fail here, before anything is written
    if spec.arch not in list_models():
        raise ValueError(f"unknown model {spec.arch!r}; valid: {', '.join(list_models())}")
    directory = spec.directory(resolve_pool_root(root))
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        return _train_member_locked(spec, directory, data_root, device, progress)


def _name(spec: MemberSpec) -> str:
    return f"{spec.source}/{spec.arch}/seed{spec.seed}"


def _refuse(spec: MemberSpec, directory: Path, problems: list[str]) -> PoolError:
    return PoolError(
        f"pool member {_name(spec)} in {directory} is inconsistent: {'; '.join(problems)}. "
        f"Delete that folder and rerun pretrain to retrain it (or choose another --pool-root)"
    )


def _write_log(directory: Path, log: MemberLog) -> None:
    atomic_write_text(
        directory / "log.json", json.dumps({"recipe": log.recipe, "epochs": log.epochs}, indent=1)
    )


def _reconcile(spec: MemberSpec, directory: Path, key: dict, log: MemberLog | None) -> tuple:
    """Bring log.json and resume.pt to one epoch; return (log, resume state or None)."""
    path = directory / "resume.pt"
    state = safe_load(path) if path.is_file() else None
    if state is None:
        if log is not None and log.completed < spec.recipe.epochs and log.completed:
            raise _refuse(spec, directory, [f"log.json records {log.completed} epochs but "
                                            f"resume.pt, needed to continue, is missing"])
        return log or MemberLog(recipe=key), None
    if not isinstance(state, dict) or "model" not in state:
        raise _refuse(spec, directory, [f"{path} is not a ptmdd resume state"])
    recipe_file = directory / "recipe.json"
    made_with = state.get("recipe") or (json.loads(recipe_file.read_text())
                                        if recipe_file.is_file() else key)
    if made_with != key:
        raise _refuse(spec, directory, [f"resume.pt holds a member trained with a different "
                                        f"recipe ({made_with})"])
    log = log or MemberLog(recipe=key)
    epoch, entry = state.get("epoch"), state.get("entry")
    if epoch == log.completed + 1 and isinstance(entry, dict) and entry.get("epoch") == epoch:
        log.epochs.append(entry)  # the crash fell between resume.pt and log.json
        _write_log(directory, log)
    elif epoch != log.completed:
        raise _refuse(spec, directory, [f"resume.pt is at epoch {epoch} but log.json records "
                                        f"{log.completed} epochs"])
    return log, state


def _train_member_locked(
    spec: MemberSpec, directory: Path, data_root: str | Path | None, device: str, progress: bool
) -> MemberLog:
    key = recipe_key(spec)
    log = read_log(directory)
    if log is not None and log_problems(spec, log):
        raise _refuse(spec, directory, log_problems(spec, log))
    log, state = _reconcile(spec, directory, key, log)
    problems = checkpoint_problems(spec, directory, log.completed)
    if problems:
        raise _refuse(spec, directory, problems)
    if log.completed >= spec.recipe.epochs:
        return log
    data = load_dataset(spec.source, data_root)
    torch_device = resolve_device(device)
    model = build_member_model(spec.arch, spec.source, spec.seed).to(torch_device)
    directory.mkdir(parents=True, exist_ok=True)
    recipe_file = directory / "recipe.json"
    if not recipe_file.is_file() or json.loads(recipe_file.read_text()) != key:
        atomic_write_text(recipe_file, json.dumps(key, indent=2))
    optimizer, scheduler = make_optimizer(model, spec.recipe)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    train_x, train_y = data.train_images.to(torch_device), data.train_labels.to(torch_device)
    test_x, test_y = data.test_images.to(torch_device), data.test_labels.to(torch_device)
    bar = tqdm(
        range(log.completed + 1, spec.recipe.epochs + 1), disable=not progress,
        desc=_name(spec), unit="epoch", initial=log.completed, total=spec.recipe.epochs,
    )
    for epoch in bar:
        start = time.perf_counter()
        generator = make_generator("pool-order", spec.source, spec.arch, spec.seed, epoch)
        loss, train_acc = (float(value) for value in train_epoch(
            model, optimizer, train_x, train_y, spec.recipe.batch_size, generator
        ))
        scheduler.step()
        bad = nonfinite_tensors(model.state_dict())
        if bad or not math.isfinite(loss):
            lr = spec.recipe.lr
            raise PoolError(
                f"pool member {_name(spec)} diverged in epoch {epoch}: its "
                f"{'weights (' + ', '.join(bad[:3]) + ')' if bad else 'training loss'} became "
                f"non-finite with --lr {lr:g}; nothing of that epoch was written and the member "
                f"is not complete. Delete {directory} and rerun pretrain with a lower --lr "
                f"(e.g. --lr {lr / 10:g})"
            )
        test_acc = accuracy(model, test_x, test_y)
        entry = {
            "epoch": epoch, "train_loss": loss, "train_acc": train_acc, "test_acc": test_acc,
            "seconds": time.perf_counter() - start, "lr": optimizer.param_groups[0]["lr"],
        }
        # the write order that no crash can make diverge (see the module docstring)
        if spec.keeps(epoch):
            _save_epoch_checkpoint(model, spec, epoch, test_acc, directory / f"epoch_{epoch}.pt")
        atomic_torch_save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch, "entry": entry, "recipe": key},
            directory / "resume.pt",
        )
        log.epochs.append(entry)
        _write_log(directory, log)
        record_computed()
        bar.set_postfix(test_acc=f"{test_acc:.3f}")
    return log


def train_pool(
    source: str,
    archs: Sequence[str],
    num_models: int,
    recipe: TrainRecipe = PAPER_POOL_RECIPE,
    *,
    keep_epochs: Sequence[int] | None = None,
    root: str | Path | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    recipe_name: str = "paper",
) -> dict[tuple[str, int], MemberLog]:
    """Train ``num_models`` members (seeds 0 … n−1) of each architecture; complete ones are skipped.

    ``recipe_name`` names the pool's folder (:data:`NAMED_RECIPES`: "mtt" for MTT's experts)."""
    check_pool_args(archs, num_models, "num_models")
    validate_recipe(recipe)
    logs = {}
    for arch in archs:
        for seed in range(num_models):
            spec = MemberSpec(
                source, arch, seed, recipe,
                tuple(sorted(keep_epochs)) if keep_epochs is not None else None, recipe_name,
            )
            logs[(arch, seed)] = train_member(
                spec, root=root, data_root=data_root, device=device, progress=progress
            )
    return logs


def pretrain_command(
    source: str, archs: Sequence[str], num_models: int, epochs: int, root: str | Path | None,
    recipe_name: str = "paper",
) -> str:
    """Return the ``ptmdd pretrain`` command that creates the given pool."""
    command = (
        f"ptmdd pretrain --source {source} --arch {','.join(archs)} --num {num_models} "
        f"--epochs {epochs}" + (f" --recipe {recipe_name}" if recipe_name != "paper" else "")
    )
    if root is not None:
        command += f" --pool-root {root}"
    return command


def load_member(
    source: str, arch: str, seed: int, epoch: int, *, root: str | Path | None = None,
    device: str = "cpu",
) -> nn.Module:
    """Load one frozen pool member (eval mode, no gradients) at ``epoch``."""
    directory = MemberSpec(source, arch, seed).directory(resolve_pool_root(root))
    path = directory / f"epoch_{epoch}.pt"
    if epoch == 0 and not path.is_file():  # the untrained network: made on demand
        write_initial_checkpoint(MemberSpec(source, arch, seed), root)
    if not path.is_file():
        raise MissingPoolError(
            f"no checkpoint {path}; create it with: "
            f"{pretrain_command(source, [arch], seed + 1, epoch, root)}"
        )
    checkpoint = safe_load(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise PoolError(f"{path} is not a ptmdd pool checkpoint (no 'state_dict')")
    model = build_member_model(arch, source, seed)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise PoolError(
            f"{path} does not fit architecture {arch} for {source}: {str(error).splitlines()[0]}"
        ) from None
    bad = nonfinite_tensors(checkpoint["state_dict"])
    if bad:
        raise PoolError(
            f"refused to load {path}: its weights ({', '.join(bad[:3])}) hold NaN or infinite "
            f"values (the member diverged or the file is damaged). Delete {directory} and retrain "
            f"it with: {pretrain_command(source, [arch], seed + 1, max(epoch, 1), root)} (with a "
            f"lower --lr if it diverged)"
        )
    model.eval().requires_grad_(False)
    return model.to(resolve_device(device))


def _has_epoch(directory: Path, epoch: int) -> bool:
    """Whether the checkpoint of ``epoch`` is on disk and the log records that epoch."""
    if not (directory / f"epoch_{epoch}.pt").is_file():
        return False
    log = read_log(directory)
    return log is not None and log.completed >= epoch


def load_pool(
    source: str,
    archs: Sequence[str],
    n_models: int,
    epoch: int,
    device: str = "cpu",
    *,
    root: str | Path | None = None,
    identity: str | None = None,
) -> dict[str, list[nn.Module]]:
    """Return frozen members 0 … n−1 of each architecture at ``epoch``, in eval mode on ``device``.

    Epoch 0 (the untrained initializations) is written on demand. ``identity`` (a
    :func:`recipe_identity`), when given, must be that of every member's recipe (:func:`check_identity`).
    """
    check_pool_args(archs, n_models)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        try:
            hint = f"epoch={final_epoch(source, archs, n_models, root)} (the pool's final epoch)"
        except (PoolError, ValueError):
            hint = "the epoch the pool was trained to"
        raise ValueError(f"load_pool epoch must be a whole number ≥ 0, got {epoch!r}: give 0 for the "
                         f"untrained initializations or an epoch the pool has trained to, e.g. {hint}")
    base = resolve_pool_root(root)
    missing = [(arch, seed) for arch in archs for seed in range(n_models)
               if epoch != 0 and not _has_epoch(MemberSpec(source, arch, seed).directory(base), epoch)]
    if missing:
        listed = ", ".join(f"{a}/seed{s}" for a, s in missing)
        raise MissingPoolError(
            f"pool {source} is missing epoch {epoch} of {listed} under {base}; create it with: "
            f"{pretrain_command(source, archs, n_models, epoch, root)}"
        )
    if identity is not None:
        check_identity(source, archs, n_models, epoch, identity, root)
    return {
        arch: [
            load_member(source, arch, seed, epoch, root=root, device=device)
            for seed in range(n_models)
        ]
        for arch in archs
    }


def member_log(member: MemberSpec, root: str | Path | None = None) -> MemberLog:
    """Return the training log of ``member`` (its per-epoch test accuracy, times)."""
    source, arch, seed = member.source, member.arch, member.seed
    directory = member.directory(resolve_pool_root(root))
    log = read_log(directory)
    if log is None:
        raise MissingPoolError(
            f"no log under {directory}; create it with: "
            f"{pretrain_command(source, [arch], seed + 1, member.recipe.epochs, root, member.recipe_name)}"
        )
    return log


def ptm_epoch(requested: int | str | None, final: int, keep_epochs: Sequence[int] | None = None) -> int:
    """The checkpoint epoch ``requested`` names: ``None``/``"final"`` is ``final`` (the recipe's
    epochs), 0 the untrained initialization, else an epoch in 1 … final that the pool keeps."""
    if requested in (None, "final"):
        return int(final)
    epoch = int(requested)
    if not 0 <= epoch <= final:
        raise PoolError(f"PTM epoch {epoch} is outside 0 … {final} (0: untrained, {final}: the "
                        "end of the pool's recipe); ask for an epoch within it or train the pool "
                        "longer (ptmdd pretrain --epochs, or pool.recipe.epochs in a profile)")
    if keep_epochs is not None and epoch not in (*keep_epochs, 0, final):
        raise PoolError(f"PTM epoch {epoch} is not among the pool's kept epochs "
                        f"{sorted(keep_epochs)}; ask for one of them or add it to keep_epochs")
    return epoch


def final_epoch(
    source: str, archs: Sequence[str], n_models: int, root: str | Path | None = None
) -> int:
    """The pool's final epoch when no recipe says it (the CLI): the epoch every member has
    completed. They must agree: members trained to different lengths raise :class:`PoolError`."""
    check_pool_args(archs, n_models)
    try:
        logs = {f"{arch}/seed{seed}": member_log(MemberSpec(source, arch, seed), root)
                for arch in archs for seed in range(n_models)}
    except MissingPoolError:
        raise MissingPoolError(
            f"pool {source} ({', '.join(archs)}, {n_models} per architecture) is not under "
            f"{resolve_pool_root(root)}; create it with: "
            f"{pretrain_command(source, archs, n_models, PAPER_POOL_RECIPE.epochs, root)}"
        ) from None
    completed = {name: log.completed for name, log in logs.items()}
    if len(set(completed.values())) > 1:
        final = max(completed.values())
        raise PoolError(
            f"the members of pool {source} have completed different numbers of epochs "
            f"({', '.join(f'{m}: {e}' for m, e in completed.items())}), so its final epoch is "
            f"ambiguous; give --pool-epoch, or finish them with: "
            f"{pretrain_command(source, archs, n_models, final, root)} (it resumes)")
    return next(iter(completed.values()))
