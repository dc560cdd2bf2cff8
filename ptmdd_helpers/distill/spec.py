"""The distillation spec: every setting of a run, method defaults filled in and visible."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ..checks import check_bool, check_int, check_number
from ..networks.training import PRECISIONS
from ..pools.guidance import GuidanceSpec
from ..specs import added_field
from .methods import REGISTRY, get_method, options_fields

if TYPE_CHECKING:
    from .mtt import TrajectorySpec

INITS = ("real", "noise")

# DC/DSA outer and inner loops by IPC (docs/method.md#dc-gradient-matching); every method's spec
# carries them (the methods that do not loop ignore them).
LOOPS_BY_IPC = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


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
    trajectory: TrajectorySpec | None = added_field(None)  # MTT's own settings (.mtt)
    # "fp32", or "bf16": the matching networks' convolutions and matmuls in bfloat16 under
    # autocast; normalization, losses, the matching distance and the images in float32
    precision: str = added_field("fp32")
    # a registered method's own settings (its Method.options dataclass; MTT's are ``trajectory``)
    options: Any = added_field(None)

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
        method = REGISTRY.get(self.method)
        return self.augment and method is not None and method.siamese


def batch_key(spec: DistillSpec) -> tuple:
    """What distillations computed together as replicates (:func:`~.loop.run_replicas`) share:
    every setting but the seed, the iteration count and the guidance point (α, PTM epoch, N_m,
    pool); whether the method's own loss is dropped (``ptm_only``) stays in the key."""
    ptm_only = spec.guidance is not None and spec.guidance.ptm_only
    return replace(spec, seed=0, iterations=1, guidance=None), ptm_only


def initial_set_key(dataset: str, ipc: int, init: str, seed: int) -> tuple:
    """The key of the initial synthetic set's stream: shared by every method and condition at
    ``seed``, and (``init="real"``) by the random real subset of the same size and seed."""
    return ("initial set", dataset, int(ipc), init, int(seed))


def make_spec(dataset: str, method: str, ipc: int, **overrides) -> DistillSpec:
    """Build a spec with the paper's defaults for ``method`` and ``ipc``; ``overrides`` win.

    ``dsa_flip`` defaults to the dataset's ``flip_augment`` (no flips for digit datasets). The
    fields of the method's own settings (MTT: ``syn_steps``, ``n_experts``, ...) are overrides too.
    Bad values raise ``ValueError`` naming the argument, its value and what is expected
    (:func:`check_spec`), before anything is computed or written.
    """
    from ..data.datasets import get_info

    entry = get_method(method)
    method = entry.name
    check_int(ipc, "make_spec: ipc (images per class)")
    own = set(entry.option_names())
    valid = [f.name for f in fields(DistillSpec)[3:] if f.name not in options_fields()]
    unknown = sorted(set(overrides) - set(valid) - own)
    if unknown:
        raise ValueError(f"make_spec: unknown argument(s) {', '.join(unknown)}; valid overrides "
                         f"for {method}: {', '.join(valid + sorted(own))}")
    outer, inner = loops_for_ipc(ipc) if ipc > 0 else (1, 1)
    spec_defaults, option_defaults = entry.spec_defaults(ipc)
    defaults = dict(spec_defaults, outer_loop=outer, inner_loop=inner,
                    dsa_flip=get_info(dataset).flip_augment)
    given = {k: v for k, v in overrides.items() if v is not None}
    if entry.options is not None:
        option_defaults.update({k: given.pop(k) for k in own if k in given})
        defaults[entry.options_field] = entry.options(**option_defaults)
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
    entry = get_method(spec.method, f"{where}: method")
    for name in options_fields():
        value = getattr(spec, name)
        if entry.options is not None and name == entry.options_field:
            if not isinstance(value, entry.options):
                raise ValueError(f"{where}: {entry.name} needs {name}={entry.options.__name__}"
                                 f"(...), got {value!r}")
            if entry.check_options is not None:
                entry.check_options(spec, where)
        elif value is not None:
            raise ValueError(f"{where}: {name} holds another method's own settings, but the "
                             f"method is {spec.method}; leave it None")


def with_seed(spec: DistillSpec, seed: int) -> DistillSpec:
    """Return ``spec`` for another replicate."""
    return replace(spec, seed=seed)
