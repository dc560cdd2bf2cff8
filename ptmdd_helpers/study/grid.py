"""A grid: what one notebook needs, as labelled evaluations and the pool checkpoints they read.

A :class:`Grid` lists a notebook's labelled evaluations (:class:`~ptmdd_helpers.store.runs.EvaluationSpec`
whose subjects are distillations, random real subsets or the whole training set) and the pool
checkpoints its distillations read (:class:`PoolNeed`); :mod:`.grids` builds one per notebook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..distill import DistillSpec
from ..pools.members import MemberSpec
from ..store.runs import EvaluationSpec


@dataclass(frozen=True)
class PoolNeed:
    """A pool checkpoint a grid needs: member ``member`` at ``epoch`` (0: its initialization)."""

    member: MemberSpec
    epoch: int


@dataclass(frozen=True)
class GridItem:
    """One evaluation of a grid with its labels (condition, pool size, ...)."""

    spec: EvaluationSpec
    labels: tuple[tuple[str, Any], ...]


@dataclass
class Grid:
    """What one notebook needs: pool checkpoints and labelled evaluations."""

    notebook: str
    params: dict[str, Any]
    items: list[GridItem] = field(default_factory=list)
    needs: list[PoolNeed] = field(default_factory=list)

    def add(self, spec: EvaluationSpec, **labels: Any) -> None:
        """Add an evaluation with its labels."""
        self.items.append(GridItem(spec, tuple(labels.items())))

    @property
    def members(self) -> list[MemberSpec]:
        """Pool members to train (one per source, architecture and seed: the most epochs asked)."""
        return merge_members(n.member for n in self.needs if n.epoch > 0)

    @property
    def initial(self) -> list[MemberSpec]:
        """Members whose untrained initialization (epoch 0) is needed."""
        return merge_members(n.member for n in self.needs if n.epoch == 0)

    @property
    def distillations(self) -> list[DistillSpec]:
        """Distillations to run (unique, in order): not those that a longer one of the grid
        stores on its way (``distill.snapshots``; :attr:`snapshots`)."""
        snapshots = self.snapshots
        return [d for d in self.distilled if d not in snapshots]

    @property
    def snapshots(self) -> dict[DistillSpec, DistillSpec]:
        """Each distillation of the grid that a longer one of it stores as a snapshot, to that
        one (:func:`snapshot_sources` with the profile's ``distill.snapshots``)."""
        counts = (self.params.get("distill") or {}).get("snapshots") or ()
        return snapshot_sources(self.distilled, counts)

    @property
    def distilled(self) -> list[DistillSpec]:
        """Every distillation the grid evaluates, snapshots included (unique, in order)."""
        return unique(i.spec.subject for i in self.items if isinstance(i.spec.subject, DistillSpec))

    @property
    def evaluations(self) -> list[EvaluationSpec]:
        """Evaluation runs (unique, in order)."""
        return unique(i.spec for i in self.items)

    @property
    def networks(self) -> int:
        """Evaluation networks to train in all."""
        return sum(spec.n_nets for spec in self.evaluations)


def merge_members(members: Iterable[MemberSpec]) -> list[MemberSpec]:
    """One member per (source, arch, seed, named recipe), the one with the most epochs, in
    first-seen order.

    A member trained for 6 epochs holds the first 2 epochs that another notebook may ask for.
    """
    chosen: dict[tuple, MemberSpec] = {}
    for member in members:
        key = member.identity
        if key not in chosen or member.recipe.epochs > chosen[key].recipe.epochs:
            chosen[key] = member
    return list(chosen.values())


def unique(items: Iterable[Any]) -> list[Any]:
    """``items`` without repeats, in first-seen order."""
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def snapshot_sources(distillations: Sequence[DistillSpec], snapshots: Sequence[int],
                     ) -> dict[DistillSpec, DistillSpec]:
    """For each distillation whose iteration count is one of ``snapshots`` and that a longer run
    of the same spec in ``distillations`` passes on its way, that longer run (the longest): it
    stores the shorter one as a snapshot (the same run id and tensors)."""
    counts = set(int(k) for k in snapshots)
    longest: dict[DistillSpec, DistillSpec] = {}
    for spec in distillations:
        shape = replace(spec, iterations=1)
        if shape not in longest or spec.iterations > longest[shape].iterations:
            longest[shape] = spec
    sources = {}
    for spec in distillations:
        source = longest[replace(spec, iterations=1)]
        if spec.iterations in counts and source.iterations > spec.iterations:
            sources[spec] = source
    return sources
