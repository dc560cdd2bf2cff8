"""Training pool members: from their seeded initialization, resumable epoch by epoch.

``train_member`` trains (or resumes, or skips) one member under a file lock; ``train_pool`` the
members 0 … n−1 of each architecture; ``write_initial_checkpoint`` saves the untrained network
(epoch 0). The on-disk layout and the write order that no crash can make diverge are described in
:mod:`.pool`; what makes a member complete is checked by :mod:`.members`.
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

from ..atomic import atomic_torch_save, atomic_write_text
from ..data.datasets import get_info, load_dataset
from ..networks.models import create_model
from ..networks.training import (
    TrainRecipe,
    accuracy,
    make_optimizer,
    resolve_device,
    seeded_model,
    train_epoch,
)
from ..seeding import make_generator
from ..work import record_computed
from .members import (
    PAPER_POOL_RECIPE,
    MemberLog,
    MemberSpec,
    PoolError,
    check_pool_args,
    checkpoint_problems,
    log_problems,
    nonfinite_tensors,
    read_log,
    recipe_key,
    resolve_pool_root,
    safe_load,
    validate_recipe,
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
    from ..networks.models import list_models

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
