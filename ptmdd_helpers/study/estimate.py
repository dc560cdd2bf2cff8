"""What a profile will cost before it runs (``ptmdd study --dry-run --estimate``).

Each distinct shape of work is timed briefly on this device, on data of the dataset's shape (random
pixels: the cost does not depend on them, and the data need not be on disk), and multiplied out
over what the store and the pool root still lack:

- a distillation: seconds per iteration over a few iterations after an untimed one (DC and DSA
  at one and two outer steps, extrapolated to their outer loop), guided by
  untrained members of the guidance's architectures (a forward costs what a trained one costs);
  its shape is the spec without its seed, iteration count and guidance weights, epoch, pool and
  pool size (one PTM is drawn per use); MTT on its experts where they are on disk, else on
  synthetic trajectories of their shape (an iteration costs the same whatever their values);
- an evaluation: seconds per training epoch of one network (the epochs after a first one, on a
  training set of the subject's size, capped and scaled by the number of batches), times epochs
  and networks, plus its test pass (timed on part of a test set of the dataset's size);
- a pool member: the same for its architecture on its source's training set, times its epochs.

Times are sequential (one task after another in one process); the study's executor runs
``workers`` of them side by side, which on a CPU shares its cores. Where the study packs
distillations into batches of replicates (``distill.replicas``; :mod:`.packing`), each shape is
also timed as one batch of that many replicates, and the total with batching is printed beside.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TextIO

from ..data import validation
from ..data.datasets import get_info, load_dataset, random_dataset
from ..distill import DistillSpec, Replica, distill, get_method, load_resources, run_replicas
from ..evaluation.evaluate import evaluate_images
from ..evaluation.protocol import EvalProtocol
from ..networks.models import create_model
from ..networks.training import accuracy, resolve_device
from ..pools.experts import SyntheticExperts
from ..pools.guidance import Guidance
from ..pools.members import MissingPoolError
from ..store.runs import EvaluationSpec, WholeDatasetSpec, Workspace
from .grid import Grid
from .tasks import needs_of, pending_tasks

# Training and test set sizes of the torchvision datasets (used where the data is not on disk).
SPLIT_SIZES = {"MNIST": (60000, 10000), "FashionMNIST": (60000, 10000), "SVHN": (73257, 26032),
               "CIFAR10": (50000, 10000), "CIFAR100": (50000, 10000),
               "TinyImageNet": (100000, 10000)}
TIMED_ITERATIONS = 3  # distillation iterations timed after an untimed first one (at least)
MIN_TIMED_SECONDS = 0.2  # time more iterations where fewer take less than this
TIMED_IMAGES = 2048  # at most this many training images in an evaluation's timed epochs
TIMED_BATCHES = 20  # training batches timed at least (beyond a first, untimed epoch)
TIMED_TEST = 1024  # test images timed (the test pass is scaled to the test set's size)


@dataclass
class Estimate:
    """Estimated seconds of what a set of grids still lacks, by kind of task."""

    name: str
    seconds: dict[str, float] = field(default_factory=lambda: {
        "member": 0.0, "distill": 0.0, "evaluation": 0.0})
    batched_distill: float = 0.0  # the distillations' seconds in batches of replicates

    @property
    def batched_total(self) -> float:
        """All kinds together, distillations in batches of replicates, in seconds."""
        return self.total - self.seconds["distill"] + self.batched_distill

    @property
    def total(self) -> float:
        """All kinds together, in seconds."""
        return sum(self.seconds.values())


def split_sizes(name: str, data_root: object = None) -> tuple[int, int]:
    """The training and test set sizes of dataset ``name`` (from the data when offline)."""
    if name in SPLIT_SIZES:
        return SPLIT_SIZES[name]
    base = validation.base_name(name)
    if base in SPLIT_SIZES:  # its held-out part, as if every class had the same size
        train, classes = SPLIT_SIZES[base][0], get_info(base).num_classes
        held = classes * validation.held_count(train / classes)
        return train - held, held
    data = load_dataset(name, data_root)
    return len(data.train_labels), len(data.test_labels)


class Timer:
    """Seconds per unit of each shape of work, measured once per shape on ``workspace``'s device
    (a context manager: the untrained PTMs it times with are deleted on exit)."""

    def __init__(self, workspace: Workspace, replicas: int = 1) -> None:
        self.workspace = workspace
        self.replicas = replicas  # distillations per batch of replicates (study.packing)
        self.device = resolve_device(workspace.device)
        self.cache: dict[object, float | tuple[float, float]] = {}
        self.pools = tempfile.TemporaryDirectory(prefix="ptmdd-estimate-")  # untrained PTMs

    def __enter__(self) -> Timer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pools.cleanup()

    def per_iteration(self, spec: DistillSpec, batched: bool = False) -> float:
        """Seconds per iteration of ``spec``; with ``batched``, per replicate of a batch of
        ``replicas`` (alone where there is no batching). A method that loops (DC, DSA) is timed
        at one and two outer steps and extrapolated to its ``outer_loop`` (an iteration is
        outer × matching + (outer − 1) × inner loop)."""
        # neither α, the PTMs' epoch and recipe nor their number changes the cost (one PTM is
        # drawn per use): one untrained member per architecture, one α
        guidance = spec.guidance and replace(spec.guidance, alphas=(1.0,), epoch=0, n_models=1)
        shape = replace(spec, seed=0, iterations=1, guidance=guidance)
        method = get_method(spec.method)
        size = self.replicas if batched and method.batch_iteration is not None else 1
        if method.loops and shape.outer_loop > 2:
            one, two = (self._timed(replace(shape, outer_loop=k), size) for k in (1, 2))
            return one + (shape.outer_loop - 1) * max(two - one, 0.0)
        return self._timed(shape, size)

    def _timed(self, shape: DistillSpec, size: int) -> float:
        key = shape if size <= 1 else (shape, size)
        if key not in self.cache:
            self.cache[key] = self._time_distillation(shape, max(size, 1))
        return self.cache[key]

    def _time_distillation(self, shape: DistillSpec, replicas: int = 1) -> float:
        info = get_info(shape.dataset)
        real_batch = shape.guidance.real_batch if shape.guidance is not None else 0  # CCLoM's
        data = random_dataset(shape.dataset, max(shape.batch_real, shape.ipc, 16,
                                        math.ceil(real_batch / info.num_classes)), 16)
        try:
            resources = load_resources(shape, self.workspace.pool_root)
        except MissingPoolError:  # MTT's experts not trained yet: trajectories of their shape
            resources = SyntheticExperts(create_model(shape.model, info.channels,
                                                      info.num_classes, info.image_size))
        guidance = (Guidance(shape.guidance, data, device=self.device, pool_root=self.pools.name)
                    if shape.guidance is not None else None)

        def run(iterations: int) -> float:
            start = time.perf_counter()
            if replicas == 1:
                distill(replace(shape, iterations=iterations), data, guidance=guidance,
                        device=self.device, progress=False, resources=resources)
            else:  # per replicate of one batch
                run_replicas([Replica(replace(shape, iterations=iterations, seed=seed), guidance)
                              for seed in range(replicas)], data, device=self.device,
                             progress=False)
            return (time.perf_counter() - start) / replicas

        run(1)  # the first call pays one-time costs (allocations, kernel choices)
        extra = TIMED_ITERATIONS
        while True:  # more iterations where a few are too quick to tell from the setup
            seconds = run(1 + extra) - run(1)
            if seconds > MIN_TIMED_SECONDS or extra >= 64 * TIMED_ITERATIONS:
                return max(seconds, 0.0) / extra
            extra *= 4

    def per_network(self, dataset: str, size: int, arch: str, protocol: EvalProtocol) -> float:
        """Seconds to train one ``arch`` network on ``size`` images of ``dataset`` by
        ``protocol`` and test it."""
        key = (dataset, size, arch, replace(protocol, epochs=1, learned_lr=False))
        if key not in self.cache:
            self.cache[key] = self._time_network(*key)
        epoch, test = self.cache[key]
        return epoch * protocol.epochs + test

    def _time_network(self, dataset: str, size: int, arch: str, protocol: EvalProtocol):
        """(seconds per training epoch, seconds of the test pass) of one network."""
        info = get_info(dataset)
        timed = min(size, TIMED_IMAGES)
        data = random_dataset(dataset, max(1, math.ceil(timed / info.num_classes)), info.num_classes)
        images, labels = data.train_images[:timed], data.train_labels[:timed]

        def run(epochs: int) -> float:  # its test pass (one image per class) costs nothing
            start = time.perf_counter()
            evaluate_images(images, labels, data, [arch], 1, replace(protocol, epochs=epochs),
                            ("estimate",), device=self.device, progress=False, compile=False)
            return time.perf_counter() - start

        timed_batches = math.ceil(timed / protocol.batch_size)
        extra = max(2, math.ceil(TIMED_BATCHES / timed_batches))  # epochs timed after the first
        run(1)  # the first call pays one-time costs (allocations, kernel choices)
        one, more = run(1), run(1 + extra)
        batches = math.ceil(size / protocol.batch_size) / timed_batches
        model = create_model(arch, info.channels, info.num_classes, info.image_size).to(self.device)
        test_set = random_dataset(dataset, 1, TIMED_TEST)
        start = time.perf_counter()
        accuracy(model, test_set.test_images.to(self.device), test_set.test_labels.to(self.device))
        test = split_sizes(dataset, self.workspace.data_root)[1] / TIMED_TEST
        return max(more - one, 0.0) / extra * batches, (time.perf_counter() - start) * test


def subject_size(subject: object, data_root: object) -> tuple[str, int]:
    """The dataset and the number of training images of an evaluation's subject."""
    if isinstance(subject, WholeDatasetSpec):
        return subject.dataset, split_sizes(subject.dataset, data_root)[0]
    return subject.dataset, subject.ipc * get_info(subject.dataset).num_classes  # a set or subset


def estimate(grids: Sequence[Grid], workspace: Workspace, name: str, timer: Timer,
             everything: bool = False) -> Estimate:
    """Estimated seconds of the tasks ``grids`` still lack (with ``everything``, of all of
    their tasks, as if nothing were stored)."""
    result = Estimate(name)
    if everything:
        needs = needs_of(grids, workspace.snapshots)
        tasks = ([("member", m) for m in needs.members] + [("distill", d) for d in needs.distillations]
                 + [("evaluation", e) for e in needs.evaluations])
    else:
        tasks = [(t.kind, t.spec) for t in pending_tasks(grids, workspace) if t.kind != "init"]
    for kind, spec in tasks:
        if kind == "distill":
            result.seconds["distill"] += timer.per_iteration(spec) * spec.iterations
            result.batched_distill += timer.per_iteration(spec, batched=True) * spec.iterations
        elif kind == "evaluation":
            assert isinstance(spec, EvaluationSpec)
            dataset, size = subject_size(spec.subject, workspace.data_root)
            result.seconds["evaluation"] += spec.n_nets * timer.per_network(
                dataset, size, spec.arch, spec.protocol)
        else:  # a pool member: its recipe's epochs over its source's training set
            recipe = spec.recipe
            protocol = EvalProtocol(epochs=1, lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay, batch_size=recipe.batch_size)
            size = split_sizes(spec.source, workspace.data_root)[0]
            per_epoch = timer.per_network(spec.source, size, spec.arch, protocol)
            result.seconds["member"] += per_epoch * recipe.epochs
    return result


def print_estimates(rows: Sequence[Estimate], file: TextIO, device: str, replicas: int = 1) -> None:
    """The estimates as a table of hours, per notebook and in total."""
    print(f"estimated compute on {device}, sequential (hours):", file=file)
    print(f"{'':<24}{'pool members':>14}{'distillations':>15}{'evaluations':>13}{'total':>10}",
          file=file)
    for row in rows:
        hours = [row.seconds[k] / 3600 for k in ("member", "distill", "evaluation")]
        print(f"{row.name:<24}" + "".join(f"{h:>{w}.2f}" for h, w in zip(hours, (14, 15, 13),
                                                                          strict=True))
              + f"{row.total / 3600:>10.2f}", file=file)
    print(f"(total: {rows[-1].total:.0f} s; what the store and the pool root already hold is not "
          f"counted)", file=file)
    if replicas > 1:
        print(f"with distillations in batches of up to {replicas} replicates (distill.replicas), "
              f"total hours: " + ", ".join(f"{row.name} {row.batched_total / 3600:.2f}"
                                           for row in rows), file=file)
