"""Expert trajectories for MTT, read from a pool: no second checkpoint format.

An expert is a pool member trained with a named recipe (``ptmdd pretrain --recipe mtt``: plain SGD
at a constant lr, every epoch kept); its trajectory is the member's ``epoch_<e>.pt`` files
(``{"state_dict", "meta"}``, :mod:`.pool`), with ``epoch_0.pt`` (the initialization it trained
from) written on demand. Expert ``k`` of (source, arch) is seed ``k`` in
``<pool root>/<source>/<arch>/<recipe>/seed<k>``. :class:`Experts` checks, before a distillation
starts, that members 0 … n−1 exist, were trained with the recipe the spec names (its identity)
and reach the last epoch an iteration can read; else :class:`~.members.MissingPoolError` with the
``ptmdd pretrain`` command that makes them. :class:`SyntheticExperts` stands in for them where
only the cost of an iteration matters (the estimate, the benchmark).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from ..seeding import make_generator
from .members import (
    MemberSpec,
    MissingPoolError,
    PoolError,
    nonfinite_tensors,
    read_member_log,
    recipe_identity,
    resolve_pool_root,
    safe_load,
)
from .pretrain import pretrain_command, write_initial_checkpoint


def flat_parameters(state_dict: dict, names: Sequence[str]) -> torch.Tensor:
    """The tensors ``names`` of ``state_dict``, flattened and concatenated (MTT's θ)."""
    return torch.cat([state_dict[name].reshape(-1).float() for name in names])


class Experts:
    """Expert trajectories of ``arch`` on ``source``: members 0 … ``n_experts``−1 of a pool."""

    def __init__(
        self, source: str, arch: str, n_experts: int, last_epoch: int, identity: str,
        recipe_name: str = "mtt", *, root: str | Path | None = None, cache: int = 32,
    ) -> None:
        self.source, self.arch, self.n_experts = source, arch, int(n_experts)
        self.recipe_name, self.root = recipe_name, root
        self.members = [MemberSpec(source, arch, k, recipe_name=recipe_name)
                        for k in range(self.n_experts)]
        self._check(last_epoch, identity)
        self._cache: OrderedDict[tuple[int, int], dict] = OrderedDict()
        self._cache_size = cache

    def _check(self, last_epoch: int, identity: str) -> None:
        """Refuse missing, short or differently trained experts before any work is done."""
        command = pretrain_command(self.source, [self.arch], self.n_experts, max(last_epoch, 1),
                                   self.root, self.recipe_name)
        base = resolve_pool_root(self.root)
        for member in self.members:
            log = read_member_log(member, self.root)
            if log is None or log.completed < last_epoch:
                have = "is missing" if log is None else f"has {log.completed} epochs"
                raise MissingPoolError(
                    f"MTT needs {self.n_experts} expert trajectories of {self.arch} on "
                    f"{self.source} (recipe {self.recipe_name}) reaching epoch {last_epoch} "
                    f"(max_start_epoch − 1 + expert_epochs) under {base}, but expert "
                    f"seed{member.seed} {have}; create them with: {command}"
                )
            found = recipe_identity(log.recipe["recipe"])
            missing = [e for e in range(1, last_epoch + 1)
                       if not (member.directory(base) / f"epoch_{e}.pt").is_file()]
            if missing:
                raise MissingPoolError(
                    f"MTT reads every expert epoch up to {last_epoch}, but "
                    f"{member.directory(base)} lacks the checkpoints of epoch(s) "
                    f"{', '.join(map(str, missing[:5]))}{' …' if len(missing) > 5 else ''} "
                    f"(trained with --keep-epochs?); delete that folder and retrain every epoch "
                    f"(no --keep-epochs) with: {command}")
            if found != identity:
                raise PoolError(
                    f"expert {member.directory(base)} was trained with recipe {found}, but this "
                    f"run matches trajectories of recipe {identity}: refusing to mix them. Point "
                    f"--pool-root at experts trained with that recipe, or retrain them ({command})"
                )

    def state(self, expert: int, epoch: int) -> dict:
        """The state dict of ``expert`` after ``epoch`` (0: its initialization), read once."""
        key = (int(expert), int(epoch))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        member = self.members[key[0]]
        if key[1] == 0:
            path = write_initial_checkpoint(member, self.root)
        else:
            path = member.directory(resolve_pool_root(self.root)) / f"epoch_{key[1]}.pt"
        if not path.is_file():
            command = pretrain_command(self.source, [self.arch], key[0] + 1, key[1], self.root,
                                       self.recipe_name)
            raise MissingPoolError(f"expert checkpoint {path} is missing (deleted?); create it "
                                   f"with: {command}")
        checkpoint = safe_load(path)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise PoolError(f"{path} is not a ptmdd pool checkpoint (no 'state_dict')")
        bad = nonfinite_tensors(checkpoint["state_dict"])
        if bad:
            raise PoolError(f"refused to use {path}: its weights ({', '.join(bad[:3])}) are not "
                            f"finite; delete that expert and retrain it")
        self._cache[key] = checkpoint["state_dict"]
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return checkpoint["state_dict"]

    def flat(self, expert: int, epoch: int, names: Sequence[str]) -> torch.Tensor:
        """θ of ``expert`` after ``epoch``: the parameters ``names``, flattened (a new tensor)."""
        return flat_parameters(self.state(expert, epoch), names)


class SyntheticExperts:
    """Trajectories of ``model``'s shape in memory, θ_e = θ_0 + e · a fixed random step, for timing:
    an MTT iteration costs the same whatever the experts' values."""

    def __init__(self, model: torch.nn.Module) -> None:
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        step = torch.randn(flat.shape, generator=make_generator("synthetic-experts")) * 1e-3
        self.start, self.step = flat, step

    def flat(self, expert: int, epoch: int, names: Sequence[str]) -> torch.Tensor:
        """θ of every expert after ``epoch`` (``names``: the model's parameters, in order)."""
        return self.start + epoch * self.step


def count_experts(source: str, arch: str, recipe_name: str = "mtt",
                  root: str | Path | None = None) -> int:
    """How many experts 0, 1, … in a row have a training log under the pool root."""
    count = 0
    while read_member_log(MemberSpec(source, arch, count, recipe_name=recipe_name), root) is not None:
        count += 1
    return count


def stored_expert_identity(source: str, arch: str, n_experts: int, recipe_name: str = "mtt",
                           root: str | Path | None = None) -> str | None:
    """The recipe identity of expert 0 of (source, arch) as trained on disk (``None``: none yet),
    so a distillation names the experts it will read; :class:`Experts` refuses a mix."""
    log = read_member_log(MemberSpec(source, arch, 0, recipe_name=recipe_name), root)
    return None if log is None or n_experts < 1 else recipe_identity(log.recipe["recipe"])
