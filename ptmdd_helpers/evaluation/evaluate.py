"""Evaluation: train fresh networks on a (synthetic or real) training set, test each.

The protocol of the DC/DSA/DM reference code (``evaluate_synset``), with its defects fixed:

* each network's accuracy is the test accuracy after its FINAL epoch (never the best over training,
  which would select on the test set);
* the learning rate is multiplied by 0.1 exactly once, at epoch ``epochs // 2`` (an int; the code
  of the study passed the milestone as a string, so it never decayed);
* exactly ``epochs`` epochs are run (the reference ran ``epochs + 1``), and the step decay is a
  ``MultiStepLR`` on one SGD optimizer (the reference rebuilt the optimizer, dropping momentum);
* every network has its own seed, derived with :func:`~ptmdd_helpers.seeding.derive_seed` from the
  caller's seed parts (in the store :func:`evaluation_seed_parts`: dataset and seed, not the set
  being evaluated), the network index and the architecture: initialization (through
  :func:`~ptmdd_helpers.networks.training.seeded_model`), mini-batch order and augmentation draws (two
  explicit generators); the global RNG is neither read nor changed.

Defaults (``distill.protocol_for``, declared by each method): DC trains 300 epochs without
augmentation, except where the reference augments (given ``dataset``/``arch``):
``crop_scale_rotate`` on MNIST, ``crop_noise`` for ConvNetBN
(:func:`~ptmdd_helpers.data.augment.dc_reference_augment`); DSA and DM train 1000 epochs with
per-sample DSA (``color_crop_cutout_flip_scale_rotate``, no flip where ``flip_augment`` is False).
SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 256;
loop :func:`~ptmdd_helpers.networks.training.train_epoch`.

``EvalProtocol.precision="bf16"`` (opt-in, part of the run id) trains and tests the networks in
mixed precision (:data:`~ptmdd_helpers.networks.training.PRECISIONS`): convolutions and matmuls in
bfloat16 under ``torch.autocast``; weights, gradients and the loss in float32.

Execution (in no run id): on CUDA, or with ``ensemble=True``, :func:`evaluate_images` trains the
networks of one architecture as a ``vmap`` ensemble (:class:`~ptmdd_helpers.networks.ensemble.Ensemble`),
each with its own initialization, batch order and augmentation draws, as in the loop; on CPU one by
one (faster there: ``benchmarks/README.md``); an architecture that cannot be vmapped
(:func:`ensemble_fallback_reason`) always in the loop. Both agree up to float arithmetic
(``tests/test_ensemble.py``); :mod:`.sets` trains the networks of several sets as one ensemble.

On CPU, results are bitwise reproducible; on CUDA, cuDNN may make repeated runs differ slightly.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..checks import check_eval_nets
from ..data.datasets import LoadedDataset
from ..data.eval_augment import eval_augmenter
from ..networks.compiling import batch_sizes, compiled_for_training
from ..networks.ensemble import Ensemble, ensemble_support
from ..networks.models import create_model
from ..networks.training import (
    accuracy,
    make_optimizer,
    resolve_device,
    seeded_model,
    train_epoch,
    with_precision,
)
from ..seeding import make_generator
from .protocol import EvalProtocol
from .training_sets import check_archs, check_training_set, network_seed_parts

__all__ = ["evaluate_images", "train_and_test", "train_and_test_ensemble"]

LOG_EVERY_EPOCHS = 10  # the ensemble's progress bar reads its training accuracy this often

def _augmenter(
    protocol: EvalProtocol, data: LoadedDataset
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """The per-sample augmentation callable for ``train_epoch`` (DSA: no flip where flips are wrong)."""
    return eval_augmenter(protocol.augment, flip=data.info.flip_augment)


def _network(
    data: LoadedDataset, arch: str, seed_parts: tuple, device: torch.device
) -> tuple[torch.nn.Module, torch.Generator, torch.Generator]:
    """The freshly initialized network seeded by ``seed_parts``, its data-order generator and its
    augmentation generator (three streams of their own)."""
    info = data.info
    model = seeded_model(
        lambda: create_model(arch, info.channels, info.num_classes, info.image_size),
        *seed_parts, "evaluate-init", arch,
    ).to(device)
    return (model, make_generator(*seed_parts, "evaluate-order", arch),
            make_generator(*seed_parts, "evaluate-augment", arch))


@functools.cache
def _fallback_reason(
    arch: str, channels: int, num_classes: int, image_size: tuple[int, int]
) -> str | None:
    """Why ``arch`` cannot be trained as a vmap ensemble (``None`` if it can); cached."""
    model = seeded_model(
        lambda: create_model(arch, channels, num_classes, image_size), "ensemble-probe", arch
    )
    sample = torch.linspace(-1.0, 1.0, 2 * channels * image_size[0] * image_size[1])
    return ensemble_support(model, sample.view(2, channels, *image_size))


def ensemble_fallback_reason(arch: str, data: LoadedDataset) -> str | None:
    """Why ``arch`` networks on ``data`` cannot be a vmap ensemble, or ``None`` if they can.

    The reason is the error of a two-network ``vmap`` forward/backward on CPU
    (:func:`~ptmdd_helpers.networks.ensemble.ensemble_support`); it is computed once per architecture
    and shape.
    """
    check_archs([arch])
    info = data.info
    return _fallback_reason(arch, info.channels, info.num_classes, tuple(info.image_size))


def _train_and_test(
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    data: LoadedDataset,
    arch: str,
    protocol: EvalProtocol,
    seed_parts: tuple,
    device: torch.device,
    compile: bool | None = None,  # noqa: A002 - the name of the option everywhere
) -> dict:
    """Train one network on tensors already on ``device``; see :func:`train_and_test`."""
    start = time.perf_counter()
    recipe = protocol.recipe()
    network, order, augment_draws = _network(data, arch, seed_parts, device)
    optimizer, scheduler = make_optimizer(network, recipe)
    model = with_precision(network, protocol.precision)
    info = data.info
    compiled = compiled_for_training(
        network, arch, (info.channels, *info.image_size), info.num_classes,
        batch_sizes(len(labels), recipe.batch_size), device, protocol.precision, compile,
    )
    augment = _augmenter(protocol, data)
    trained = model if compiled is None else compiled
    train_accuracy = float("nan")
    for _ in range(recipe.epochs):
        _, train_accuracy = train_epoch(
            trained, optimizer, images, labels, recipe.batch_size, order, augment,
            augment_draws,
        )
        scheduler.step()
    test_accuracy = accuracy(model, test_images, test_labels)  # eager: no graph per test shape
    return {
        "arch": arch,
        "accuracy": float(test_accuracy),
        "train_accuracy": float(train_accuracy),
        "seconds": time.perf_counter() - start,
        "compiled": compiled is not None,
    }


def train_and_test_ensemble(
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    data: LoadedDataset,
    arch: str,
    protocol: EvalProtocol,
    seed_parts: Sequence[tuple],
    device: torch.device,
    progress: bool = False,
    per_network_images: bool = False,
) -> list[dict]:
    """Train one network per ``seed_parts`` entry together as a vmap ensemble; one dict each.

    Network i is initialized, shuffled and augmented as :func:`_train_and_test` with
    ``seed_parts[i]`` would do it; ``seconds`` is the ensemble's time divided by its size. With
    ``per_network_images`` network i trains on ``images[i]`` (the labels are shared).
    """
    start = time.perf_counter()
    recipe = protocol.recipe()
    networks = [_network(data, arch, parts, device) for parts in seed_parts]
    orders = [order for _, order, _ in networks]
    augment_draws = [draws for _, _, draws in networks]
    ensemble = Ensemble([model for model, _, _ in networks], precision=protocol.precision)
    del networks  # the ensemble holds stacked copies; free the separate ones
    optimizer, scheduler = make_optimizer(ensemble.parameters(), recipe)
    augment = _augmenter(protocol, data)
    train_accuracy = torch.full((len(ensemble),), float("nan"))
    bar = tqdm(range(recipe.epochs), disable=not progress, unit="epoch",
               desc=f"evaluate {data.info.name} {arch} x{len(ensemble)}")
    for epoch in bar:
        _, train_accuracy = ensemble.train_epoch(
            optimizer, images, labels, recipe.batch_size, orders, augment, augment_draws,
            per_network_images=per_network_images,
        )
        scheduler.step()
        if progress and (epoch + 1) % LOG_EVERY_EPOCHS == 0:  # a read: the host waits here
            bar.set_postfix(train_acc=f"{100 * float(train_accuracy.mean()):.1f}%")
    test_accuracy = ensemble.accuracy(test_images, test_labels)
    bar.set_postfix(acc=f"{100 * sum(test_accuracy) / len(ensemble):.1f}%")
    bar.close()
    seconds = (time.perf_counter() - start) / len(ensemble)
    return [
        {"arch": arch, "accuracy": float(test), "train_accuracy": float(train), "seconds": seconds,
         "compiled": False}
        for test, train in zip(test_accuracy, train_accuracy.tolist(), strict=True)
    ]


def train_and_test(
    images: torch.Tensor,
    labels: torch.Tensor,
    data: LoadedDataset,
    arch: str,
    protocol: EvalProtocol,
    seed_parts: tuple,
    device: str | torch.device = "cpu",
    compile: bool | None = None,  # noqa: A002
) -> dict:
    """Train one fresh network on (images, labels); return arch, final-epoch test accuracy, etc.

    The returned dict holds ``arch``, ``accuracy`` (test accuracy after the last epoch),
    ``train_accuracy`` (running training accuracy of the last epoch, on augmented batches when
    augmenting, as the reference reported it), ``seconds`` (training plus testing) and
    ``compiled`` (whether its training step ran compiled, :mod:`~ptmdd_helpers.networks.compiling`;
    ``compile``: see :func:`evaluate_images`).
    ``seed_parts`` (with ``arch``) determine initialization, batch order and augmentation.
    """
    check_archs([arch])
    check_training_set(images, labels, data)
    device = resolve_device(device)
    return _train_and_test(
        images.detach().to(device), labels.long().to(device),
        data.test_images.to(device), data.test_labels.to(device),
        data, arch, protocol, tuple(seed_parts), device, _check_compile(compile),
    )


def _check_compile(compile: bool | None) -> bool | None:  # noqa: A002
    """``compile`` itself; refuses anything but True, False or None (the default)."""
    if compile is not None and not isinstance(compile, bool):
        raise ValueError(f"compile must be True, False or None (the default), got {compile!r}")
    return compile


def _wants_ensemble(ensemble: bool | None, device: torch.device) -> bool:
    """Whether to try the vmap ensemble: as asked, or (``None``) on CUDA devices only."""
    return device.type == "cuda" if ensemble is None else bool(ensemble)


def uses_ensemble(
    arch: str, data: LoadedDataset, device: str | torch.device = "cpu", ensemble: bool | None = None
) -> bool:
    """Whether :func:`evaluate_images` with ``device`` and ``ensemble`` trains ``arch`` as a vmap ensemble.

    ``ensemble=None`` means on CUDA only (on CPU the loop was faster); an architecture whose
    two-network ``vmap`` forward/backward raises (:func:`ensemble_fallback_reason`) never is.
    """
    check_archs([arch])
    return _wants_ensemble(ensemble, resolve_device(device)) and \
        ensemble_fallback_reason(arch, data) is None


def _ensemble_rows(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    data: LoadedDataset,
    arch: str,
    n_nets: int,
    protocol: EvalProtocol,
    seed_parts: tuple,
    device: torch.device,
    group: int,
    progress: bool,
    done: dict,
    keep: Callable[[list[dict], bool], None],
) -> None:
    """``keep(rows, trained)`` the rows of ``n_nets`` networks trained as ensembles of ``group``
    (halved on CUDA out-of-memory); a group whose rows are all in ``done`` is kept untrained."""
    first = 0
    while first < n_nets:
        nets = range(first, min(first + group, n_nets))
        if all((arch, net) in done for net in nets):  # finished before an interruption
            keep([done[(arch, net)] for net in nets], False)
            first = nets.stop
            continue
        out_of_memory = False
        try:
            results = train_and_test_ensemble(
                *train, *test, data, arch, protocol,
                [network_seed_parts(seed_parts, net) for net in nets], device, progress,
            )
        except torch.cuda.OutOfMemoryError:
            if len(nets) == 1:
                raise
            out_of_memory = True
        if out_of_memory:  # outside the handler, so that the failed attempt's tensors are freed
            group = max(1, len(nets) // 2)
            torch.cuda.empty_cache()
            warnings.warn(
                f"out of GPU memory training {len(nets)} {arch} networks at once; retrying "
                f"{group} at a time (set ensemble_size to choose)", RuntimeWarning, stacklevel=3,
            )
            continue
        keep([{"arch": arch, "net": net, **{k: v for k, v in row.items() if k != "arch"}}
              for net, row in zip(nets, results, strict=True)], True)
        first = nets.stop


def evaluate_images(
    images: torch.Tensor,
    labels: torch.Tensor,
    data: LoadedDataset,
    archs: Sequence[str],
    n_nets: int,
    protocol: EvalProtocol,
    seed_parts: tuple,
    device: str | torch.device = "cpu",
    progress: bool = True,
    ensemble: bool | None = None,
    ensemble_size: int | None = None,
    compile: bool | None = None,  # noqa: A002
    finished: Sequence[dict] = (),
    on_rows: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Train and test ``n_nets`` fresh networks per architecture; one row per network.

    Rows: ``arch``, ``net`` (index), ``accuracy`` (final epoch, test set), ``train_accuracy``,
    ``seconds``, ``compiled``. ``compile`` compiles the training step of the networks trained
    one at a time where :func:`~ptmdd_helpers.networks.compiling.compiled_for_training` allows it
    (ConvNetW32 on CPU in fp32; ``None``, the default, only from 100 images per batch and unless
    ``PTMDD_COMPILE=0``; ``False`` never); it changes no run id.
    Network ``net`` of ``arch`` is seeded by ``network_seed_parts(seed_parts, net)``
    and ``arch``, so adding networks or architectures leaves existing rows unchanged (up to the
    float arithmetic of the ensemble's batched kernels).

    ``ensemble=True`` trains the networks of an architecture together as a vmap ensemble, at
    most ``ensemble_size`` at a time (default: all ``n_nets``; halved on a CUDA out-of-memory
    error); ``False`` trains them one at a time; ``None`` (default) means the ensemble on CUDA
    and the loop on CPU, where the loop was faster. An architecture that cannot be vmapped
    (:func:`ensemble_fallback_reason`) is trained in the loop, with a ``RuntimeWarning``. The
    choice does not change the rows' format or any run id; an ensemble row's ``seconds`` is its
    group's time divided by the group's size.

    Resuming: the networks of ``finished`` rows (of an interrupted call with the same arguments)
    are not trained again, their rows kept; ``on_rows(rows)`` gets the rows so far after each
    network (or ensemble group) trained, e.g. to checkpoint them (``evaluation_run`` does).
    """
    check_archs(archs)
    check_eval_nets(n_nets, "evaluate_images n_nets (evaluation networks per architecture)")
    if not isinstance(seed_parts, (tuple, list)) or not seed_parts:
        raise ValueError(f"evaluate_images seed_parts must be a non-empty tuple that keys the "
                         f"networks' random streams, e.g. evaluation_seed_parts(dataset, seed); "
                         f"got {seed_parts!r}")
    if ensemble_size is not None and (
        isinstance(ensemble_size, bool) or not isinstance(ensemble_size, int) or ensemble_size < 1
    ):
        raise ValueError(f"ensemble_size must be an int >= 1 or None, got {ensemble_size!r}")
    check_training_set(images, labels, data)
    device = resolve_device(device)
    compile = _check_compile(compile)  # noqa: A001
    # the training and test sets go to the device once, for all networks
    train = images.detach().to(device), labels.long().to(device)
    test = data.test_images.to(device), data.test_labels.to(device)
    seed_parts = tuple(seed_parts)
    done = {(row.get("arch"), row.get("net")): dict(row) for row in finished or ()
            if isinstance(row, dict)}
    rows: list[dict] = []

    def keep(new: list[dict], trained: bool) -> None:
        rows.extend(new)
        if trained and on_rows is not None:
            on_rows(list(rows))

    for arch in archs:
        if _wants_ensemble(ensemble, device):
            reason = ensemble_fallback_reason(arch, data)
            if reason is None:
                group = n_nets if ensemble_size is None else ensemble_size
                _ensemble_rows(train, test, data, arch, n_nets, protocol, seed_parts, device, group,
                               progress, done, keep)
                continue
            warnings.warn(
                f"{arch} cannot be trained as a vmap ensemble ({reason}); its {n_nets} "
                f"network(s) are trained one at a time", RuntimeWarning, stacklevel=2,
            )
        bar = tqdm(range(n_nets), disable=not progress, unit="net",
                   desc=f"evaluate {data.info.name} {arch}")
        for net in bar:
            if (arch, net) in done:  # finished before an interruption
                keep([done[(arch, net)]], False)
                continue
            row = _train_and_test(
                *train, *test, data, arch, protocol, network_seed_parts(seed_parts, net), device,
                compile,
            )
            keep([{"arch": arch, "net": net, **{k: v for k, v in row.items() if k != "arch"}}], True)
            bar.set_postfix(acc=f"{100 * row['accuracy']:.1f}%")
        bar.close()
    return rows
