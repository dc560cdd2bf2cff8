"""Pools of pre-trained models (PTMs): train, resume, and load them safely.

On-disk layout (the pool root is an argument, else ``$PTMDD_POOLS``, else ``./runs/pools``)::

    <pool root>/<source>/<arch>/seed<k>/
        recipe.json          training recipe and dataset shape (everything but the epoch count)
        log.json             per completed epoch: train loss/accuracy, test accuracy, seconds
        epoch_<e>.pt         {"state_dict", "meta"} after epoch e (every epoch, or a chosen set)
        epoch_0.pt           the untrained initialization, written only when asked for
                             (:func:`write_initial_checkpoint`; the "untrained PTM" of the study)
        resume.pt            model, optimizer and scheduler state after the last complete epoch

A pool member is identified by (source, arch, seed); its checkpoints by epoch. The learning-rate
milestones are absolute epochs, so a member trained for 3 epochs is the first 3 epochs of a
150-epoch member with the same recipe, and asking for more epochs continues it. Every file is
written atomically; checkpoints are loaded with ``weights_only=True``, so a pool from elsewhere can
carry no code. Seeds are explicit: member ``k`` of a pool of ``n`` has seed ``k`` (0 … n−1), which
fixes its initialization and its data order.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from filelock import FileLock
from torch import nn
from tqdm.auto import tqdm

from .data import get_info, load_dataset
from .models import create_model
from .paths import resolve
from .seeding import make_generator
from .store import atomic_torch_save, atomic_write_text
from .training import (
    TrainRecipe,
    accuracy,
    make_optimizer,
    resolve_device,
    seeded_model,
    train_epoch,
)

PAPER_POOL_RECIPE = TrainRecipe(
    epochs=150, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256, milestones=(50, 100)
)


class PoolError(RuntimeError):
    """A pool checkpoint is missing, unsafe, or does not fit its architecture."""


class MissingPoolError(PoolError):
    """Members or epochs of a pool are not on disk; the message gives the command to make them."""


def resolve_pool_root(root: str | Path | None = None) -> Path:
    """Return the pool root: ``root``, else ``$PTMDD_POOLS``, else ``runs/pools`` (:mod:`.paths`)."""
    return resolve("pools", root)


@dataclass(frozen=True)
class MemberSpec:
    """One pool member: an architecture trained on a source dataset from one seed."""

    source: str
    arch: str
    seed: int
    recipe: TrainRecipe = PAPER_POOL_RECIPE
    keep_epochs: tuple[int, ...] | None = None  # None keeps every epoch

    def directory(self, root: Path) -> Path:
        """Return this member's folder under ``root``."""
        return root / self.source / self.arch / f"seed{self.seed}"

    def keeps(self, epoch: int) -> bool:
        """Whether the checkpoint after ``epoch`` is kept."""
        return (
            self.keep_epochs is None or epoch in self.keep_epochs or epoch == self.recipe.epochs
        )


@dataclass
class MemberLog:
    """The JSON log of a member's training, one entry per completed epoch."""

    recipe: dict
    epochs: list[dict] = field(default_factory=list)

    @property
    def completed(self) -> int:
        """Number of completed epochs."""
        return len(self.epochs)

    @property
    def seconds(self) -> float:
        """Training time of the completed epochs (tests included), as recorded."""
        return sum(e["seconds"] for e in self.epochs)


def _recipe_values(recipe: TrainRecipe) -> dict:
    """A recipe's values as ``recipe.json`` stores them: all but the epoch count."""
    values = asdict(recipe)
    values.pop("epochs")
    values["milestones"] = list(values["milestones"])
    return values


def _recipe_key(spec: MemberSpec) -> dict:
    info = get_info(spec.source)
    return {
        "source": spec.source, "arch": spec.arch, "seed": spec.seed,
        "recipe": _recipe_values(spec.recipe),
        "channels": info.channels, "image_size": list(info.image_size),
        "num_classes": info.num_classes,
    }


UNTRAINED = "untrained"  # the pool identity of epoch-0 members: no recipe made them


def recipe_identity(recipe: TrainRecipe | dict) -> str:
    """The identity of a pool: a 16-hex hash of its training recipe's values (all but the epoch
    count, which only says how far a member got), from a recipe or from ``recipe.json``'s
    ``"recipe"`` entry. Guidance specs carry it, so a pool trained otherwise gets other run ids."""
    values = _recipe_values(recipe) if isinstance(recipe, TrainRecipe) else dict(recipe)
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored_identity(
    source: str, archs: Sequence[str], n_models: int, epoch: int, root: str | Path | None = None
) -> str:
    """The identity of the pool on disk (members 0 … n−1 of each architecture); raises
    :class:`MissingPoolError` with the command that makes a missing member, or
    :class:`PoolError` if the members were trained with different recipes."""
    if int(epoch) == 0:
        return UNTRAINED
    base = resolve_pool_root(root)
    found: dict[str, str] = {}
    for arch in archs:
        for seed in range(n_models):
            log = _read_log(MemberSpec(source, arch, seed).directory(base))
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


def _read_log(directory: Path) -> MemberLog | None:
    path = directory / "log.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return MemberLog(recipe=raw["recipe"], epochs=raw["epochs"])


def read_member_log(member: MemberSpec, root: str | Path | None = None) -> MemberLog | None:
    """The training log of ``member`` under the pool root, or ``None`` before its first epoch."""
    return _read_log(member.directory(resolve_pool_root(root)))


def safe_load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse pickle payloads with a clear error."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise PoolError(
            f"refused to load {path}: it carries a pickle payload beyond tensors and plain "
            f"containers (weights_only=True rejected it: {str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError) as error:
        raise PoolError(f"cannot read checkpoint {path}: {error}") from None


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

    get_info(spec.source)  # unknown names fail here, before anything is written
    if spec.arch not in list_models():
        raise ValueError(f"unknown model {spec.arch!r}; valid: {', '.join(list_models())}")
    directory = spec.directory(resolve_pool_root(root))
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        return _train_member_locked(spec, directory, data_root, device, progress)


def _train_member_locked(
    spec: MemberSpec, directory: Path, data_root: str | Path | None, device: str, progress: bool
) -> MemberLog:
    key = _recipe_key(spec)
    log = _read_log(directory)
    if log is not None and log.recipe != key:
        raise PoolError(
            f"{directory} holds a member trained with a different recipe ({log.recipe}); "
            f"choose another --pool-root or delete that folder"
        )
    if log is not None and log.completed >= spec.recipe.epochs:
        return log
    data = load_dataset(spec.source, data_root)
    torch_device = resolve_device(device)
    model = build_member_model(spec.arch, spec.source, spec.seed).to(torch_device)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "recipe.json", json.dumps(key, indent=2))
    optimizer, scheduler = make_optimizer(model, spec.recipe)
    log = log or MemberLog(recipe=key)
    if log.completed:
        state = safe_load(directory / "resume.pt", map_location=torch_device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    train_x, train_y = data.train_images.to(torch_device), data.train_labels.to(torch_device)
    test_x, test_y = data.test_images.to(torch_device), data.test_labels.to(torch_device)
    bar = tqdm(
        range(log.completed + 1, spec.recipe.epochs + 1), disable=not progress,
        desc=f"{spec.source}/{spec.arch}/seed{spec.seed}", unit="epoch",
        initial=log.completed, total=spec.recipe.epochs,
    )
    for epoch in bar:
        start = time.perf_counter()
        generator = make_generator("pool-order", spec.source, spec.arch, spec.seed, epoch)
        loss, train_acc = (float(value) for value in train_epoch(
            model, optimizer, train_x, train_y, spec.recipe.batch_size, generator
        ))
        scheduler.step()
        test_acc = accuracy(model, test_x, test_y)
        seconds = time.perf_counter() - start
        entry = {
            "epoch": epoch, "train_loss": loss, "train_acc": train_acc, "test_acc": test_acc,
            "seconds": seconds, "lr": optimizer.param_groups[0]["lr"],
        }
        if spec.keeps(epoch):
            _save_epoch_checkpoint(model, spec, epoch, test_acc, directory / f"epoch_{epoch}.pt")
        atomic_torch_save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch},
            directory / "resume.pt",
        )
        log.epochs.append(entry)
        atomic_write_text(
            directory / "log.json", json.dumps({"recipe": log.recipe, "epochs": log.epochs}, indent=1)
        )
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
) -> dict[tuple[str, int], MemberLog]:
    """Train ``num_models`` members (seeds 0 … n−1) of each architecture; complete ones are skipped."""
    logs = {}
    for arch in archs:
        for seed in range(num_models):
            spec = MemberSpec(
                source, arch, seed, recipe,
                tuple(sorted(keep_epochs)) if keep_epochs is not None else None,
            )
            logs[(arch, seed)] = train_member(
                spec, root=root, data_root=data_root, device=device, progress=progress
            )
    return logs


def pretrain_command(
    source: str, archs: Sequence[str], num_models: int, epochs: int, root: str | Path | None
) -> str:
    """Return the ``ptmdd pretrain`` command that creates the given pool."""
    command = (
        f"ptmdd pretrain --source {source} --arch {','.join(archs)} --num {num_models} "
        f"--epochs {epochs}"
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
    model.eval().requires_grad_(False)
    return model.to(resolve_device(device))


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
    base = resolve_pool_root(root)
    missing = [
        (arch, seed) for arch in archs for seed in range(n_models)
        if epoch != 0 and
        not (MemberSpec(source, arch, seed).directory(base) / f"epoch_{epoch}.pt").is_file()
    ]
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


def member_log(source: str, arch: str, seed: int, root: str | Path | None = None) -> MemberLog:
    """Return the training log of a member (its per-epoch test accuracy, times)."""
    directory = MemberSpec(source, arch, seed).directory(resolve_pool_root(root))
    log = _read_log(directory)
    if log is None:
        raise MissingPoolError(
            f"no log under {directory}; create it with: "
            f"{pretrain_command(source, [arch], seed + 1, PAPER_POOL_RECIPE.epochs, root)}"
        )
    return log


def final_epoch(
    source: str, archs: Sequence[str], n_models: int, root: str | Path | None = None
) -> int:
    """The last epoch that every member 0 … n−1 of every architecture has completed."""
    try:
        return min(
            member_log(source, arch, seed, root).completed
            for arch in archs for seed in range(n_models)
        )
    except MissingPoolError:
        raise MissingPoolError(
            f"pool {source} ({', '.join(archs)}, {n_models} per architecture) is not under "
            f"{resolve_pool_root(root)}; create it with: "
            f"{pretrain_command(source, archs, n_models, PAPER_POOL_RECIPE.epochs, root)}"
        ) from None
