"""The distillation spec: every setting of a run, method defaults filled in and visible."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..checks import check_bool, check_int, check_number
from ..guidance import GuidanceSpec

METHODS = ("DC", "DSA", "DM")
INITS = ("real", "noise")

# DC/DSA outer and inner loops by IPC (docs/method.md#dc-gradient-matching).
LOOPS_BY_IPC = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}

METHOD_DEFAULTS = {
    "DC": {"iterations": 1000, "lr_img": 0.1, "init": "noise"},
    "DSA": {"iterations": 1000, "lr_img": 0.1, "init": "noise"},
    "DM": {"iterations": 20000, "lr_img": 1.0, "init": "real"},
}


def loops_for_ipc(ipc: int) -> tuple[int, int]:
    """(outer, inner) loops for ``ipc``: the table's entry, else that of the nearest tabulated IPC.

    Ties go to the smaller IPC; e.g. IPC 5 uses IPC 1's loops (1, 1) and IPC 100 uses IPC 50's.
    """
    nearest = min(LOOPS_BY_IPC, key=lambda tabulated: (abs(tabulated - ipc), tabulated))
    return LOOPS_BY_IPC[nearest]


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
        return self.augment and self.method in ("DSA", "DM")


def initial_set_key(dataset: str, ipc: int, init: str, seed: int) -> tuple:
    """The key of the initial synthetic set's stream: shared by every method and condition at
    ``seed``, and (``init="real"``) by the random real subset of the same size and seed."""
    return ("initial set", dataset, int(ipc), init, int(seed))


def make_spec(dataset: str, method: str, ipc: int, **overrides) -> DistillSpec:
    """Build a spec with the paper's defaults for ``method`` and ``ipc``; ``overrides`` win.

    ``dsa_flip`` defaults to the dataset's ``flip_augment`` (no flips for digit datasets).
    Bad values raise ``ValueError`` naming the argument, its value and what is expected
    (:func:`check_spec`), before anything is computed or written.
    """
    from ..data import get_info

    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    method = method.upper()
    check_int(ipc, "make_spec: ipc (images per class)")
    valid = [f.name for f in fields(DistillSpec)][3:]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"make_spec: unknown argument(s) {', '.join(unknown)}; valid overrides: "
                         f"{', '.join(valid)}")
    outer, inner = loops_for_ipc(ipc) if ipc > 0 else (1, 1)
    defaults = dict(METHOD_DEFAULTS[method], outer_loop=outer, inner_loop=inner,
                    dsa_flip=get_info(dataset).flip_augment)
    defaults.update({k: v for k, v in overrides.items() if v is not None})
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


def with_seed(spec: DistillSpec, seed: int) -> DistillSpec:
    """Return ``spec`` for another replicate."""
    return replace(spec, seed=seed)
