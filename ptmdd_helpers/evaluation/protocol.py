"""The evaluation protocol: how each evaluation network is trained, part of every evaluation's run id.

Each method's defaults are declared with the method (``distill.protocol_for``: DC 300 epochs, with
the reference's augmentation on MNIST and for ConvNetBN; DSA and DM 1000 epochs with DSA; MTT 1000
epochs with DSA at the learning rate the distillation learned, ``learned_lr``, as MTT's own
evaluation does). :mod:`.evaluate` trains and tests the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import check_bool, check_int, check_number
from ..data.eval_augment import EVAL_AUGMENTS
from ..networks.training import TrainRecipe, check_precision
from ..specs import added_field

AUGMENTS = EVAL_AUGMENTS  # none, dsa, crop_scale_rotate, crop_noise


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
