"""Pools of pre-trained models (PTMs) on disk: their layout, and loading them safely.

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
turn non-finite are refused while training (:mod:`.pretrain`) and when loaded (:mod:`.members`
has the checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ..networks.training import resolve_device
from .members import (
    PAPER_POOL_RECIPE,
    UNTRAINED,
    MemberLog,
    MemberSpec,
    MissingPoolError,
    PoolError,
    check_pool_args,
    nonfinite_tensors,
    read_log,
    recipe_identity,
    resolve_pool_root,
    safe_load,
)
from .pretrain import build_member_model, pretrain_command, write_initial_checkpoint


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
