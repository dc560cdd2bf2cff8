"""The distillation spec: every setting of a run, method defaults filled in and visible."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..checks import check_bool, check_int, check_number
from ..guidance import GuidanceSpec
from ..pool_members import MTT_EXPERT_RECIPE, NAMED_RECIPES, recipe_identity
from ..specs import added_field
from ..training import PRECISIONS

METHODS = ("DC", "DSA", "DM", "MTT")
INITS = ("real", "noise")

# DC/DSA outer and inner loops by IPC (docs/method.md#dc-gradient-matching).
LOOPS_BY_IPC = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}

METHOD_DEFAULTS = {
    "DC": {"iterations": 1000, "lr_img": 0.1, "init": "noise"},
    "DSA": {"iterations": 1000, "lr_img": 0.1, "init": "noise"},
    "DM": {"iterations": 20000, "lr_img": 1.0, "init": "real"},
    "MTT": {"iterations": 5000, "init": "real"},  # lr_img by IPC (MTT_BY_IPC)
}

# MTT's hyper-parameters by IPC: CIFAR-10 without ZCA whitening (which ptmdd does not implement),
# from the MTT paper's table (docs/method.md#mtt-trajectory-matching): (syn_steps N, expert_epochs
# M, max_start_epoch T+, lr_img, lr_lr). Other datasets and IPCs use the row of the nearest IPC.
MTT_BY_IPC = {1: (50, 2, 5, 1000.0, 1e-7), 10: (30, 2, 15, 1000.0, 1e-5), 50: (30, 2, 40, 1000.0, 1e-5)}


@dataclass(frozen=True)
class TrajectorySpec:
    """MTT: which expert trajectories are matched, and how.

    The experts are members 0 … ``n_experts``−1 of the distillation's ``model`` trained on its
    ``dataset`` with the named pool recipe ``recipe`` (its folder, ``ptmdd pretrain --recipe``);
    ``pool_recipe`` is that recipe's identity (:func:`~ptmdd_helpers.pools.recipe_identity`), so
    experts trained otherwise give other run ids. Per iteration an expert and a start epoch
    t ∈ [0, ``max_start_epoch``) are drawn; the student takes ``syn_steps`` SGD steps from θ_t on
    ``batch_syn`` synthetic images each (0: all of them) with a learned learning rate (starting at
    ``lr_init``, updated by SGD at ``lr_lr``) and is compared with θ_{t+``expert_epochs``}.
    """

    n_experts: int = 1
    syn_steps: int = 50
    expert_epochs: int = 2
    max_start_epoch: int = 5
    lr_lr: float = 1e-7
    lr_init: float = MTT_EXPERT_RECIPE.lr
    batch_syn: int = 0
    recipe: str = "mtt"
    pool_recipe: str = recipe_identity(MTT_EXPERT_RECIPE)

    @property
    def needed_epochs(self) -> int:
        """The last expert epoch an iteration can read: T+ − 1 + M."""
        return self.max_start_epoch - 1 + self.expert_epochs


TRAJECTORY_FIELDS = tuple(f.name for f in fields(TrajectorySpec))


def mtt_defaults(ipc: int) -> tuple[dict, dict]:
    """MTT's (spec, trajectory) defaults for ``ipc``: the row of the nearest IPC in ``MTT_BY_IPC``."""
    steps, epochs, start, lr_img, lr_lr = MTT_BY_IPC[nearest_ipc(MTT_BY_IPC, ipc)]
    return ({"lr_img": lr_img},
            {"syn_steps": steps, "expert_epochs": epochs, "max_start_epoch": start, "lr_lr": lr_lr})


def check_trajectory(trajectory: TrajectorySpec, where: str) -> None:
    """Raise ``ValueError`` for a field of ``trajectory`` of the wrong type or out of range."""
    if not isinstance(trajectory, TrajectorySpec):
        raise ValueError(f"{where}: MTT needs trajectory=TrajectorySpec(...), got {trajectory!r}")
    for name in ("n_experts", "syn_steps", "expert_epochs", "max_start_epoch"):
        check_int(getattr(trajectory, name), f"{where}: trajectory {name} (--{name.replace('_', '-')})",
                  minimum=1)
    check_int(trajectory.batch_syn, f"{where}: trajectory batch_syn (--batch-syn)", minimum=0,
              fix="0 uses the whole synthetic set in every student step")
    check_number(trajectory.lr_lr, f"{where}: trajectory lr_lr (--lr-lr)", positive=True)
    check_number(trajectory.lr_init, f"{where}: trajectory lr_init (--lr-init)", positive=True)
    if trajectory.recipe not in NAMED_RECIPES:
        raise ValueError(f"{where}: trajectory recipe must be a named pool recipe "
                         f"({', '.join(NAMED_RECIPES)}), got {trajectory.recipe!r}")
    if not isinstance(trajectory.pool_recipe, str) or not trajectory.pool_recipe:
        raise ValueError(f"{where}: trajectory pool_recipe must be a pool identity string "
                         f"(pools.recipe_identity), got {trajectory.pool_recipe!r}")


def loops_for_ipc(ipc: int) -> tuple[int, int]:
    """(outer, inner) loops for ``ipc``: the table's entry, else that of the nearest tabulated IPC.

    Ties go to the smaller IPC; e.g. IPC 5 uses IPC 1's loops (1, 1) and IPC 100 uses IPC 50's.
    """
    return LOOPS_BY_IPC[nearest_ipc(LOOPS_BY_IPC, ipc)]


def nearest_ipc(table: dict[int, object], ipc: int) -> int:
    """The IPC of ``table`` nearest to ``ipc`` (ties to the smaller): how untabulated IPCs are set."""
    return min(table, key=lambda tabulated: (abs(tabulated - ipc), tabulated))


@dataclass(frozen=True)
class DistillSpec:
    """One distillation: dataset, method, IPC, every hyper-parameter, guidance and seed."""

    dataset: str
    method: str
    ipc: int
    model: str = "ConvNet"
    iterations: int = 1000
    lr_img: float = 0.1
    lr_net: float = 0.01
    momentum_img: float = 0.5
    batch_real: int = 256
    batch_train: int = 256
    outer_loop: int = 1
    inner_loop: int = 1
    init: str = "noise"
    metric: str = "ours"
    augment: bool = True  # Siamese augmentation in DSA and DM (off: plain DC matching / DM)
    dsa_flip: bool = True
    bn_batch_per_class: int = 16
    guidance: GuidanceSpec | None = None
    seed: int = 0
    trajectory: TrajectorySpec | None = added_field(None)  # MTT only: the experts matched
    # "fp32", or "bf16": the matching networks' convolutions and matmuls in bfloat16 under
    # autocast; normalization, losses, the matching distance and the images in float32
    precision: str = added_field("fp32")

    @property
    def replicate_key(self) -> tuple:
        """What defines this run's replicate: the key of every random stream of its iterations.

        Dataset, method, IPC, matching model, initialization and seed; not the guidance, the
        iteration count or any other setting, so conditions compared at one seed share their
        streams (common random numbers, ``docs`` in the README's "Random streams").
        """
        return ("distill", self.dataset, self.method, int(self.ipc), self.model, self.init,
                int(self.seed))

    @property
    def uses_dsa(self) -> bool:
        """Whether real and synthetic batches get Siamese augmentation (DSA and DM)."""
        return self.augment and self.method in ("DSA", "DM", "MTT")


def initial_set_key(dataset: str, ipc: int, init: str, seed: int) -> tuple:
    """The key of the initial synthetic set's stream: shared by every method and condition at
    ``seed``, and (``init="real"``) by the random real subset of the same size and seed."""
    return ("initial set", dataset, int(ipc), init, int(seed))


def make_spec(dataset: str, method: str, ipc: int, **overrides) -> DistillSpec:
    """Build a spec with the paper's defaults for ``method`` and ``ipc``; ``overrides`` win.

    ``dsa_flip`` defaults to the dataset's ``flip_augment`` (no flips for digit datasets). For MTT,
    the :class:`TrajectorySpec` fields (``syn_steps``, ``n_experts``, ...) are overrides too.
    Bad values raise ``ValueError`` naming the argument, its value and what is expected
    (:func:`check_spec`), before anything is computed or written.
    """
    from ..data import get_info

    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    method = method.upper()
    check_int(ipc, "make_spec: ipc (images per class)")
    valid = [f.name for f in fields(DistillSpec)][3:]
    if method == "MTT":
        valid = [name for name in valid if name != "trajectory"] + list(TRAJECTORY_FIELDS)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"make_spec: unknown argument(s) {', '.join(unknown)}; valid overrides: "
                         f"{', '.join(valid)}")
    outer, inner = loops_for_ipc(ipc) if ipc > 0 else (1, 1)
    defaults = dict(METHOD_DEFAULTS[method], outer_loop=outer, inner_loop=inner,
                    dsa_flip=get_info(dataset).flip_augment)
    given = {k: v for k, v in overrides.items() if v is not None}
    if method == "MTT":
        spec_defaults, trajectory = mtt_defaults(ipc)
        defaults.update(spec_defaults)
        trajectory.update({k: given.pop(k) for k in TRAJECTORY_FIELDS if k in given})
        defaults["trajectory"] = TrajectorySpec(**trajectory)
    defaults.update(given)
    spec = DistillSpec(dataset=dataset, method=method, ipc=ipc, **defaults)
    check_spec(spec, "make_spec")
    return spec


def check_spec(spec: DistillSpec, where: str = "DistillSpec") -> None:
    """Raise ``ValueError`` for a field of ``spec`` of the wrong type or out of range, naming
    the field (``where`` names the caller), its value and what is expected.

    Names (method, model, init, metric) and the IPC's range (1 … the smallest class of the data)
    are checked by ``validate_spec``, which calls this first.
    """
    if not isinstance(spec.dataset, str):
        raise ValueError(f"{where}: dataset must be a dataset name, got {spec.dataset!r}")
    for name in ("method", "model", "init", "metric"):
        if not isinstance(getattr(spec, name), str):
            raise ValueError(f"{where}: {name} must be a string, got {getattr(spec, name)!r}")
    check_int(spec.ipc, f"{where}: ipc (images per class)")
    check_int(spec.iterations, f"{where}: iterations", minimum=0,
              fix="0 keeps the initial synthetic set")
    for name in ("lr_img", "lr_net"):
        check_number(getattr(spec, name), f"{where}: {name} (a learning rate)", positive=True)
    check_number(spec.momentum_img, f"{where}: momentum_img", minimum=0)
    for name in ("batch_real", "batch_train", "outer_loop", "inner_loop", "bn_batch_per_class"):
        check_int(getattr(spec, name), f"{where}: {name}", minimum=1)
    check_bool(spec.augment, f"{where}: augment")
    check_bool(spec.dsa_flip, f"{where}: dsa_flip")
    if spec.guidance is not None and not isinstance(spec.guidance, GuidanceSpec):
        raise ValueError(f"{where}: guidance must be a GuidanceSpec or None, got "
                         f"{type(spec.guidance).__name__}")
    check_int(spec.seed, f"{where}: seed (the replicate index)", minimum=0)
    if spec.precision not in PRECISIONS:
        raise ValueError(f"{where}: precision must be one of {', '.join(PRECISIONS)} "
                         f"(--precision), got {spec.precision!r}")
    if spec.method == "MTT":
        check_trajectory(spec.trajectory, where)
    elif spec.trajectory is not None:
        raise ValueError(f"{where}: trajectory (expert trajectories) is for MTT only, but the "
                         f"method is {spec.method}; leave it None")


def with_seed(spec: DistillSpec, seed: int) -> DistillSpec:
    """Return ``spec`` for another replicate."""
    return replace(spec, seed=seed)
