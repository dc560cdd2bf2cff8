"""The evaluation protocol: how each evaluation network is trained, part of every evaluation's run id.

Defaults by method (:func:`protocol_for`) follow the reference code of each method: DC 300 epochs
(with the reference's augmentation on MNIST and for ConvNetBN), DSA and DM 1000 epochs with DSA,
MTT 1000 epochs with DSA at the learning rate the distillation learned (``learned_lr``, as MTT's
own evaluation does). :mod:`.evaluate` trains and tests the networks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .augment import EVAL_AUGMENTS, dc_reference_augment
from .checks import check_bool, check_int, check_number
from .specs import added_field
from .training import TrainRecipe, check_precision

AUGMENTS = EVAL_AUGMENTS  # none, dsa, crop_scale_rotate, crop_noise

# method -> (epochs, augment) of the reference evaluation
METHOD_DEFAULTS: dict[str, tuple[int, str]] = {
    "DC": (300, "none"),
    "DSA": (1000, "dsa"),
    "DM": (1000, "dsa"),
    "MTT": (1000, "dsa"),  # and the learned lr (learned_lr=True)
}


@dataclass(frozen=True)
class EvalProtocol:
    """How each evaluation network is trained: SGD with one step decay at half of training."""

    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augment: str = "none"  # AUGMENTS: "none" | "dsa" | "crop_scale_rotate" | "crop_noise"
    precision: str = added_field("fp32")  # "fp32" | "bf16" (opt-in mixed precision, training.py)
    # train at the learning rate the evaluated distillation learned (MTT) instead of ``lr``
    learned_lr: bool = added_field(False)

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:  # the fields' names in the messages (and the options)
            raise ValueError(f"unknown augment {self.augment!r} (EvalProtocol augment, "
                             f"--eval-augment); valid: {', '.join(AUGMENTS)}")
        check_precision(self.precision)
        check_int(self.epochs, "EvalProtocol epochs (--eval-epochs)", minimum=1)
        check_int(self.batch_size, "EvalProtocol batch_size", minimum=1)
        check_number(self.lr, "EvalProtocol lr", positive=True)
        check_number(self.momentum, "EvalProtocol momentum", minimum=0)
        check_number(self.weight_decay, "EvalProtocol weight_decay", minimum=0)
        check_bool(self.learned_lr, "EvalProtocol learned_lr")

    def recipe(self) -> TrainRecipe:
        """The training recipe: lr × 0.1 at epoch ``epochs // 2`` (no decay if epochs < 2)."""
        milestones = (self.epochs // 2,) if self.epochs >= 2 else ()
        return TrainRecipe(
            epochs=self.epochs, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, batch_size=self.batch_size,
            milestones=milestones, gamma=0.1,
        )


def protocol_for(
    method: str, *, dataset: str | None = None, arch: str | None = None, **overrides: object
) -> EvalProtocol:
    """DC: 300 epochs, no augmentation; DSA and DM: 1000 epochs with DSA; MTT: as DSA at the
    learned lr (``learned_lr=True``); overrides replace fields.

    ``dataset`` and ``arch`` (the evaluation network) only pick DC's reference augmentation
    (``crop_scale_rotate`` on MNIST, ``crop_noise`` for ConvNetBN) unless ``augment`` is given.
    ``method`` is case-insensitive; unknown methods or field names raise ``ValueError``.
    """
    key = str(method).upper()
    if key not in METHOD_DEFAULTS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHOD_DEFAULTS)}")
    names = {f.name for f in fields(EvalProtocol)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown protocol field(s) {unknown}; valid: {sorted(names)}")
    epochs, augment = METHOD_DEFAULTS[key]
    if key == "DC":  # the reference's get_daparam
        augment = dc_reference_augment(dataset, arch) or augment
    protocol = EvalProtocol(epochs=epochs, augment=augment, learned_lr=key == "MTT")
    return replace(protocol, **overrides)


