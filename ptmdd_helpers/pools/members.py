"""Pool members on disk: their spec, recipe identity, log, and the checks that say a member is complete.

Members are trained by :mod:`.pretrain` and loaded by :mod:`.pool`; this module only reads. A
member is complete when its ``log.json`` records the recipe's epochs (in order, with finite
numbers, for this very recipe), its ``resume.pt`` (if present) is at the epoch the log ends at,
and every checkpoint the member keeps (:meth:`MemberSpec.keeps`) is on disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..checks import is_int, is_number
from ..data.datasets import get_info
from ..networks.training import TrainRecipe
from ..paths import resolve

PAPER_POOL_RECIPE = TrainRecipe(
    epochs=150, lr=0.01, momentum=0.9, weight_decay=0.005, batch_size=256, milestones=(50, 100)
)
# The expert trajectories of MTT (Cazenavette et al. 2022, its buffer.py defaults): plain SGD at a
# constant lr, no momentum or weight decay, 50 epochs, every epoch kept (docs/method.md#mtt).
MTT_EXPERT_RECIPE = TrainRecipe(
    epochs=50, lr=0.01, momentum=0.0, weight_decay=0.0, batch_size=256, milestones=()
)
# Named recipes (``ptmdd pretrain --recipe``): "paper" members live in <source>/<arch>/seed<k>,
# those of any other named recipe in <source>/<arch>/<name>/seed<k>, so both can be on disk at once.
NAMED_RECIPES = {"paper": PAPER_POOL_RECIPE, "mtt": MTT_EXPERT_RECIPE}
UNTRAINED = "untrained"  # the pool identity of epoch-0 members: no recipe made them


class PoolError(RuntimeError):
    """A pool checkpoint is missing, unsafe, or does not fit its architecture."""


class MissingPoolError(PoolError):
    """Members or epochs of a pool are not on disk; the message gives the command to make them."""


def resolve_pool_root(root: str | Path | None = None) -> Path:
    """Return the pool root: ``root``, else ``$PTMDD_POOLS``, else ``runs/pools`` (:mod:`.paths`)."""
    return resolve("pools", root)


def member_directory(root: Path, source: str, arch: str, seed: int, recipe_name: str = "paper") -> Path:
    """The folder of member (source, arch, seed) of the pool trained with ``recipe_name``."""
    if recipe_name not in NAMED_RECIPES:
        raise ValueError(f"unknown pool recipe {recipe_name!r}; valid: {', '.join(NAMED_RECIPES)} "
                         f"(--recipe)")
    base = root / source / arch
    return (base if recipe_name == "paper" else base / recipe_name) / f"seed{seed}"


@dataclass(frozen=True)
class MemberSpec:
    """One pool member: an architecture trained on a source dataset from one seed."""

    source: str
    arch: str
    seed: int
    recipe: TrainRecipe = PAPER_POOL_RECIPE
    keep_epochs: tuple[int, ...] | None = None  # None keeps every epoch
    recipe_name: str = "paper"  # the named recipe's folder (NAMED_RECIPES); "paper": none

    def directory(self, root: Path) -> Path:
        """Return this member's folder under ``root`` (a named recipe other than "paper" adds
        its name: ``<source>/<arch>/mtt/seed<k>``)."""
        return member_directory(root, self.source, self.arch, self.seed, self.recipe_name)

    @property
    def identity(self) -> tuple[str, str, int, str]:
        """What names the member on disk, in logs, task keys and dependencies: (source, arch,
        seed, named recipe); its epoch count and kept epochs do not."""
        return (self.source, self.arch, int(self.seed), self.recipe_name)

    @property
    def key(self) -> str:
        """The member's folder relative to the pool root: ``Digits/ConvNet/seed0``, ``…/mtt/seed0``."""
        return member_directory(Path(), self.source, self.arch, self.seed, self.recipe_name).as_posix()

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


# ------------------------------------------------------------------------------- recipes

_FLAGS = {"epochs": "epochs (--epochs)", "lr": "lr (--lr)", "momentum": "momentum (--momentum)",
          "weight_decay": "weight_decay (--weight-decay)", "batch_size": "batch_size (--batch-size)",
          "gamma": "gamma"}


def _recipe_problems(values: Mapping) -> list[str]:
    def number(name: str, low: float, strict: bool) -> str | None:
        value = values[name]
        ok = is_number(value) and (value > low if strict else value >= low)
        return None if ok else (f"{_FLAGS[name]} must be a finite number {'>' if strict else '>='} "
                                f"{low:g}, got {value!r}")

    def count(name: str) -> str | None:
        value = values[name]
        ok = is_int(value) and value >= 1
        return None if ok else f"{_FLAGS[name]} must be a whole number >= 1, got {value!r}"

    problems = [count("epochs"), count("batch_size"), number("lr", 0, True),
                number("momentum", 0, False), number("weight_decay", 0, False),
                number("gamma", 0, True)]
    milestones = tuple(values["milestones"])
    if not all(is_int(m) and m >= 1 for m in milestones) or \
            list(milestones) != sorted(set(milestones)):
        problems.append(f"milestones (--milestones) must be strictly increasing epochs >= 1 "
                        f"(absolute, so they may lie beyond --epochs), got {list(milestones)}")
    return [p for p in problems if p]


def _raise_for_recipe(problems: list[str]) -> None:
    if problems:
        raise ValueError(
            f"invalid pool training recipe: {'; '.join(problems)}. Fix the value(s) and rerun "
            f"(the paper's pools use --epochs 150 --lr 0.01 --momentum 0.9 --weight-decay 0.005 "
            f"--batch-size 256 --milestones 50,100); nothing was written"
        )


def validate_recipe(recipe: TrainRecipe) -> TrainRecipe:
    """Return ``recipe`` if it can train a pool; else raise ``ValueError`` naming each bad value."""
    _raise_for_recipe(_recipe_problems(asdict(recipe)))
    return recipe


def pool_recipe(
    epochs: int, lr: float, momentum: float, weight_decay: float, batch_size: int,
    milestones: Sequence[int] = (), gamma: float = 0.1,
) -> TrainRecipe:
    """Build a validated :class:`TrainRecipe` for a pool (``ValueError`` naming each bad value)."""
    values = {"epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
              "batch_size": batch_size, "milestones": tuple(milestones), "gamma": gamma}
    _raise_for_recipe(_recipe_problems(values))
    return TrainRecipe(**values)


def check_pool_args(archs: Sequence[str], n_models: int, flag: str = "n_models") -> None:
    """Raise ``ValueError`` unless ``archs`` is a non-empty list of names and ``n_models >= 1``."""
    if isinstance(archs, Sequence) and not isinstance(archs, str) and not archs:
        raise ValueError("archs is empty: give at least one architecture, e.g. ['ConvNet'] (on "
                         "the command line: --arch ConvNet,AlexNet)")
    if isinstance(archs, str) or not isinstance(archs, Sequence) or \
            not all(isinstance(a, str) for a in archs):
        example = (f"[{archs!r}] rather than {archs!r} (a string would be read as one "
                   f"architecture per character)" if isinstance(archs, str)
                   else f"['ConvNet'], got {archs!r}")
        raise ValueError(f"archs must be a non-empty list or tuple of architecture names, e.g. "
                         f"{example}; on the command line: --arch ConvNet,AlexNet")
    if not is_int(n_models) or n_models < 1:
        raise ValueError(
            f"{flag} must be a whole number >= 1 (members per architecture; --num on the command "
            f"line), got {n_models!r}: a pool without members cannot be trained or guide anything"
        )


def recipe_values(recipe: TrainRecipe) -> dict:
    """A recipe's values as ``recipe.json`` stores them: all but the epoch count."""
    values = asdict(recipe)
    values.pop("epochs")
    values["milestones"] = list(values["milestones"])
    return values


def recipe_key(spec: MemberSpec) -> dict:
    """What ``recipe.json`` and ``log.json`` record of ``spec``: names, recipe, dataset shape."""
    info = get_info(spec.source)
    return {
        "source": spec.source, "arch": spec.arch, "seed": spec.seed,
        "recipe": recipe_values(spec.recipe),
        "channels": info.channels, "image_size": list(info.image_size),
        "num_classes": info.num_classes,
    }


def recipe_identity(recipe: TrainRecipe | dict) -> str:
    """The identity of a pool: a 16-hex hash of its training recipe's values (all but the epoch
    count, which only says how far a member got), from a recipe or from ``recipe.json``'s
    ``"recipe"`` entry. Guidance specs carry it, so a pool trained otherwise gets other run ids."""
    if not isinstance(recipe, (TrainRecipe, dict)):
        raise ValueError(f"recipe_identity recipe must be a TrainRecipe (pools.members.pool_recipe(...)) or "
                         f"the 'recipe' dict of a member's recipe.json, got {recipe!r}")
    values = recipe_values(recipe) if isinstance(recipe, TrainRecipe) else dict(recipe)
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------- reading

def read_log(directory: Path) -> MemberLog | None:
    """The ``log.json`` in a member's ``directory``, or ``None`` when there is none."""
    path = directory / "log.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return MemberLog(recipe=raw["recipe"], epochs=raw["epochs"])


def read_member_log(member: MemberSpec, root: str | Path | None = None) -> MemberLog | None:
    """The training log of ``member`` under the pool root, or ``None`` before its first epoch."""
    return read_log(member.directory(resolve_pool_root(root)))


def safe_load(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse pickle payloads with a clear error."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise PoolError(
            f"refused to load {path}: it carries a pickle payload beyond tensors and plain "
            f"containers (weights_only=True rejected it: {str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, ValueError) as error:
        raise PoolError(f"cannot read checkpoint {path}: {error}") from None


def nonfinite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` that hold a NaN or an infinity."""
    floats = {k: v for k, v in state.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point()}
    if not floats or bool(torch.stack([torch.isfinite(v).all() for v in floats.values()]).all()):
        return []
    return [k for k, v in floats.items() if not bool(torch.isfinite(v).all())]


# ------------------------------------------------------------------------------- checks

def log_problems(spec: MemberSpec, log: MemberLog) -> list[str]:
    """What is wrong with ``log`` as the log of ``spec``: another recipe, gaps, non-finite numbers."""
    if log.recipe != recipe_key(spec):
        return [f"log.json holds a member trained with a different recipe ({log.recipe})"]
    problems = []
    if [e.get("epoch") for e in log.epochs] != list(range(1, log.completed + 1)):
        problems.append(f"log.json's epochs {[e.get('epoch') for e in log.epochs]} are not "
                        f"1 … {log.completed}")
    for entry in log.epochs:
        bad = [k for k, v in entry.items() if k != "seconds" and isinstance(v, float)
               and not math.isfinite(v)]
        if bad:
            problems.append(f"log.json records non-finite {', '.join(bad)} at epoch "
                            f"{entry.get('epoch')} (the training diverged)")
            break
    return problems


def checkpoint_problems(spec: MemberSpec, directory: Path, completed: int) -> list[str]:
    """The checkpoints ``spec`` keeps among its first ``completed`` epochs that are missing."""
    missing = [e for e in range(1, min(completed, spec.recipe.epochs) + 1)
               if spec.keeps(e) and not (directory / f"epoch_{e}.pt").is_file()]
    if not missing:
        return []
    return [f"the log records epoch(s) {missing} but their checkpoints "
            f"{', '.join(f'epoch_{e}.pt' for e in missing)} are missing (deleted, or kept with "
            f"other --keep-epochs)"]


def check_member(member: MemberSpec, root: str | Path | None = None) -> list[str]:
    """Why ``member`` is not complete under the pool root; ``[]`` when log, resume.pt, checkpoints agree."""
    directory = member.directory(resolve_pool_root(root))
    try:
        log = read_log(directory)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"{directory / 'log.json'} cannot be read ({error})"]
    if log is None:
        return [f"{directory} has no log.json: the member is not trained"]
    problems = log_problems(member, log)
    if problems and "different recipe" in problems[0]:
        return problems
    if log.completed < member.recipe.epochs:
        problems.append(f"log.json records {log.completed} of {member.recipe.epochs} epochs")
    resume = directory / "resume.pt"
    if resume.is_file():
        try:
            state = safe_load(resume, mmap=True)
            epoch = state.get("epoch") if isinstance(state, dict) else None
        except PoolError as error:
            epoch = f"unreadable ({error})"
        if epoch != log.completed:
            problems.append(f"resume.pt is at epoch {epoch} but log.json records {log.completed} "
                            f"(an interrupted write; training the member again reconciles it)")
    return problems + checkpoint_problems(member, directory, log.completed)


def member_complete(member: MemberSpec, root: str | Path | None = None) -> bool:
    """Whether ``member`` completed its recipe's epochs with log, resume.pt and checkpoints agreeing."""
    return not check_member(member, root)
