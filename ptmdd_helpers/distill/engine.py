"""What every method's iteration works on: the state of one distillation, its random streams, its
initial set, its step (with the PTM loss). The loop over iterations is :mod:`.loop`.

Random streams (common random numbers): every random draw of iteration ``i`` comes from a
generator derived from the spec's *replicate key* (:attr:`DistillSpec.replicate_key`: dataset,
method, IPC, matching model, init, seed), ``i`` and one purpose name per stream: ``"network"``
(the fresh network), ``"real"`` (real batches), ``"augment"`` (Siamese augmentation, and the
inner loop's augmentation in DSA and MTT), ``"inner order"`` (the inner loop's mini-batch order),
``"expert"`` (MTT's expert and start epoch) and ``"guidance"`` (the PTM drawn and CCLoM's real
batch). The initial set comes from
:func:`~.spec.initial_set_key`. So a baseline and a guided run at one seed see the same networks,
batches and augmentations (adding guidance shifts no other stream), the iteration count changes
no draw, and a run resumed from a checkpoint (synthetic images + optimizer state) continues
exactly as an uninterrupted one would. The run id (the spec's hash) still names the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..data.augment import DSAConfig, siamese_augment
from ..data.datasets import LoadedDataset
from ..networks.models import create_model, list_models
from ..networks.training import autocast, fp32_normalization, seeded_model
from ..pools.guidance import Guidance
from ..seeding import make_generator
from .matching import METRICS
from .spec import INITS, DistillSpec, initial_set_key

SaveCheckpoint = Callable[[dict, int], None]
LoadCheckpoint = Callable[[], "tuple[dict, int] | None"]
# Called with the result a run of k iterations returns (images, labels, history, seconds, learned)
# and k, at each listed snapshot iteration k of a longer run: the same tensors (the iteration count
# changes no draw).
SaveSnapshot = Callable[[dict, int], None]

# Iterations between resumable checkpoints, unless the caller says otherwise (--checkpoint-every).
CHECKPOINT_EVERY = 50
# Iterations between the host's reads of the losses: the progress bar, the history and the
# divergence check happen there, so the device runs ahead in between (also at each checkpoint).
LOG_EVERY = 10


class DistillationDiverged(RuntimeError):
    """The loss or the images became NaN or infinite; ``images`` holds the last good synthetic set:
    the one verified at the previous check (at most ``LOG_EVERY`` iterations before the bad one)."""

    def __init__(self, message: str, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(message)
        self.images = images
        self.labels = labels


@dataclass
class DistillState:
    """What a method's iteration needs: the spec, data, synthetic set, its optimizer, guidance,
    the tensors the method learns (``learned``), what it read before the run (``resources``) and
    a place for what it keeps between iterations (``cache``)."""

    spec: DistillSpec
    data: LoadedDataset
    images: torch.Tensor
    labels: torch.Tensor
    optimizer: torch.optim.Optimizer
    guidance: Guidance | None
    device: torch.device
    dsa: DSAConfig
    iteration: int = 0
    batched: bool = True  # classes in one pass where exact; False: one pass per class (reference)
    learned: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. MTT's "learned_lr"
    resources: object | None = None  # e.g. MTT's expert trajectories (experts.Experts)
    cache: dict = field(default_factory=dict)  # e.g. MTT's student network

    @property
    def matches(self) -> bool:
        """Whether the method's own (DD) loss is computed: not when the PTM loss is used alone."""
        return self.spec.guidance is None or not self.spec.guidance.ptm_only

    def generator(self, *purpose: object) -> torch.Generator:
        """The stream of ``purpose`` in this iteration, derived from the replicate key."""
        return make_generator(*self.spec.replicate_key, self.iteration, *purpose)

    def fresh_network(self) -> torch.nn.Module:
        """The randomly initialized network of this iteration, on the device (in bf16, its
        normalization layers compute in float32)."""
        info = self.data.info
        net = seeded_model(
            lambda: create_model(self.spec.model, info.channels, info.num_classes,
                                 info.image_size),
            *self.spec.replicate_key, self.iteration, "network",
        ).to(self.device)
        return fp32_normalization(net) if self.spec.precision != "fp32" else net

    def autocast(self):
        """The spec's precision for the networks' forward passes (nothing for "fp32")."""
        return autocast(self.device, self.spec.precision)

    def class_slice(self, label: int) -> slice:
        """The rows of the synthetic set that belong to class ``label``."""
        return slice(label * self.spec.ipc, (label + 1) * self.spec.ipc)

    def class_batches(
        self, real_generator: torch.Generator, augment_generator: torch.Generator
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per class, in class order: a real batch (from ``real_generator``) and the synthetic
        images, Siamese-augmented in DSA and in DM with augmentation (one shared transform per
        class, from ``augment_generator``)."""
        reals, syns = [], []
        for label in range(self.data.info.num_classes):
            real = self.data.sample_class(label, self.spec.batch_real, real_generator)
            real = real.to(self.device)
            syn = self.images[self.class_slice(label)]
            if self.spec.uses_dsa:
                real, syn = siamese_augment([real, syn], self.dsa, augment_generator)
            reals.append(real)
            syns.append(syn)
        return reals, syns

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """Add the PTM loss α·L_PTM (with guidance) to the method's ``loss``, take one optimizer
        step on the synthetic images (and the learned tensors); return the total, detached.

        The loss stays on the device: reading it would make the host wait for the device every
        step. :func:`~.loop.run_replicas` reads the losses, and checks them, at its logging points.
        """
        return step_replicas([self], [loss])[0]

    def with_guidance(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` + α·L_PTM of the current images (unchanged without guidance). Every step of an
        iteration draws the guidance from one stream (``"guidance"``)."""
        if self.guidance is None:
            return loss
        if self.cache.get("guidance iteration") != self.iteration:
            self.cache["guidance iteration"] = self.iteration
            self.cache["guidance generator"] = self.generator("guidance")
        return loss + self.guidance.loss(self.images, self.labels,
                                         self.cache["guidance generator"])


def step_replicas(states: Sequence[DistillState], losses: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """:meth:`DistillState.step` for replicates computed together: each state's loss plus its own
    PTM loss, one backward pass over their sum (each replicate's images get the gradient of their
    own loss: the replicates share no tensor), then every replicate's optimizer step."""
    totals = [state.with_guidance(loss) for state, loss in zip(states, losses, strict=True)]
    for state in states:
        state.optimizer.zero_grad(set_to_none=True)
    torch.stack(totals).sum().backward()
    for state in states:
        state.optimizer.step()
    return [total.detach() for total in totals]


def validate_spec(spec: DistillSpec, data: LoadedDataset) -> None:
    """Raise ``ValueError`` with a clear message for settings that cannot run on ``data``."""
    from .spec import check_spec

    check_spec(spec)  # the method is a registered one (methods.get_method)
    if spec.model not in list_models():
        raise ValueError(f"unknown model {spec.model!r}; valid: {', '.join(list_models())}")
    smallest = data.min_class_count()
    if spec.ipc <= 0 or spec.ipc > smallest:
        raise ValueError(
            f"IPC must be between 1 and the smallest class of {data.info.name} ({smallest}); "
            f"got {spec.ipc}; choose the IPC (--ipc) in that range"
        )
    if spec.init not in INITS:
        raise ValueError(f"unknown init {spec.init!r}; valid: {', '.join(INITS)}")
    if spec.metric not in METRICS:
        raise ValueError(f"unknown matching metric {spec.metric!r}; valid: {', '.join(METRICS)}")


def initial_synthetic_set(
    spec: DistillSpec, data: LoadedDataset
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic images (class by class) from random real images or Gaussian noise, with labels.

    The stream is :func:`~.spec.initial_set_key` (dataset, IPC, init, seed): every method and
    condition at one seed starts from the same set, and with ``init="real"`` it is the random real
    subset of that seed (:func:`real_subset_generator`).
    """
    info = data.info
    generator = make_generator(*initial_set_key(spec.dataset, spec.ipc, spec.init, spec.seed))
    labels = torch.arange(info.num_classes).repeat_interleave(spec.ipc)
    if spec.init == "real":
        images, labels = data.sample_classes(spec.ipc, generator)
    else:
        shape = (info.num_classes * spec.ipc, info.channels, *info.image_size)
        images = torch.randn(shape, generator=generator)
    return images.clone(), labels


def real_subset_generator(dataset: str, ipc: int, seed: int) -> torch.Generator:
    """The stream of the random real subset of ``seed``: that of the ``init="real"`` set."""
    return make_generator(*initial_set_key(dataset, ipc, "real", seed))
