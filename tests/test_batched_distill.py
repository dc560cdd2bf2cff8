"""The batched class passes of DC/DSA/DM equal the per-class reference computation.

Tolerances: in float64 the batched and per-class paths agree to ~1e-14 (checked at 1e-10, which
shows the computation is the same); in float32 the losses agree to a relative ~1e-7 and the image
gradients to ~1e-6 of their largest entry (checked at 1e-5), well inside the float32 error of the
per-class path itself (up to 1e-2 against float64 on some draws).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ptmdd_helpers.data.datasets import LoadedDataset, load_dataset, random_dataset
from ptmdd_helpers.distill import distill, make_spec
from ptmdd_helpers.distill.dc import batched_matching_loss, class_gradients, looped_matching_loss
from ptmdd_helpers.distill.dm import embed_in_passes, looped_mean_embedding_distance, mean_embedding_distance
from ptmdd_helpers.distill.grouped import activation_bytes, grouped_support, images_per_pass
from ptmdd_helpers.distill.matching import matched_parameters
from ptmdd_helpers.networks.models import create_model
from ptmdd_helpers.seeding import make_generator

FAST = {"model": "ConvNetW32", "batch_real": 16}


def _net(name, shape, classes=10, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    net = create_model(name, shape[0], classes, shape[1:]).to(dtype)
    batchnorms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if batchnorms:  # as DC does: statistics from a real batch, then frozen
        net.train()
        with torch.no_grad():
            net(torch.randn(8, *shape, dtype=dtype))
        for module in batchnorms:
            module.eval()
    return net


def _batches(shape, sizes, ipc, dtype, seed=1):
    generator = make_generator("batches", seed)
    reals = [torch.randn(n, *shape, generator=generator).to(dtype) for n in sizes]
    syn = torch.randn(len(sizes) * ipc, *shape, generator=generator).to(dtype).requires_grad_(True)
    return reals, syn


def _loss_and_image_grad(fn, syn):
    syn.grad = None
    loss = fn()
    loss.backward()
    return loss.detach(), syn.grad.clone()


def _assert_close(reference, batched, dtype):
    (l0, g0), (l1, g1) = reference, batched
    if dtype == torch.float64:
        assert abs(l0 - l1).item() <= 1e-10 * max(1.0, abs(l0).item())
        assert (g0 - g1).abs().max().item() <= 1e-10
    else:  # float32: relative to the size of the loss and of the largest gradient entry
        assert abs(l0 - l1).item() <= 1e-5 * max(1.0, abs(l0).item())
        assert (g0 - g1).abs().max().item() <= 1e-5 * max(1.0, g0.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("model", "shape", "sizes", "ipc", "pass_images"),
    [
        ("ConvNetW32", (1, 8, 8), [16] * 10, 2, None),  # Digits-shaped, one pass
        ("ConvNetW32", (1, 8, 8), [16, 15, 14] * 3 + [16], 2, 7),  # ragged, passes straddle classes
        ("ConvNet", (1, 28, 28), [8] * 10, 1, None),  # FashionMNIST-shaped, passes of 16 on a CPU
        ("ConvNet", (1, 28, 28), [6] * 10, 3, 9),
    ],
)
def test_batched_dc_matching_equals_per_class_loop(model, shape, sizes, ipc, pass_images, dtype):
    net = _net(model, shape, dtype=dtype)
    params = matched_parameters(list(net.parameters()), "ours")
    assert grouped_support(net, params) is None
    reals, syn = _batches(shape, sizes, ipc, dtype)
    syns = list(syn.split(ipc))
    reference = _loss_and_image_grad(lambda: looped_matching_loss(net, params, reals, syns, "ours"),
                                     syn)
    batched = _loss_and_image_grad(
        lambda: batched_matching_loss(net, params, reals, syns, "ours", pass_images), syn)
    _assert_close(reference, batched, dtype)


@pytest.mark.parametrize("metric", ["mse", "cos"])
@pytest.mark.parametrize(
    "model", ["ConvNetW32", "ConvNetBN", "ConvNetLN", "ConvNetGN", "MLP", "LeNet", "AlexNetBN"]
)
def test_batched_gradients_cover_every_parameter_kind(model, metric):
    # mse/cos read every parameter: biases, GroupNorm/LayerNorm/frozen BatchNorm affine weights
    dtype = torch.float64
    net = _net(model, (1, 8, 8), classes=4, dtype=dtype)
    params = matched_parameters(list(net.parameters()), metric)
    assert grouped_support(net, params) is None
    reals, syn = _batches((1, 8, 8), [6, 5, 6, 4], 2, dtype)
    syns = list(syn.split(2))
    reference = _loss_and_image_grad(lambda: looped_matching_loss(net, params, reals, syns, metric),
                                     syn)
    batched = _loss_and_image_grad(
        lambda: batched_matching_loss(net, params, reals, syns, metric, 5), syn)
    _assert_close(reference, batched, dtype)


def test_batched_matching_costs_the_flops_of_the_loop():
    net = _net("ConvNet", (1, 28, 28))
    params = matched_parameters(list(net.parameters()), "ours")
    reals, syn = _batches((1, 28, 28), [6] * 10, 1, torch.float32)
    syns = list(syn.split(1))
    totals = []
    for fn in (looped_matching_loss, batched_matching_loss):
        with FlopCounterMode(display=False) as counter:
            fn(net, params, reals, syns, "ours").backward()
        totals.append(counter.get_total_flops())
    assert totals[0] == totals[1] > 0


def test_per_class_gradients_equal_autograd_per_class():
    net = _net("ConvNetW32", (1, 8, 8), dtype=torch.float64)
    params = list(net.parameters())
    reals, _ = _batches((1, 8, 8), [5, 7, 3], 1, torch.float64)
    grads = class_gradients(net, params, reals, pass_images=4)
    assert not any(g.requires_grad for g in grads)  # no graph back into the network's parameters
    for label, real in enumerate(reals):
        loss = F.cross_entropy(net(real), torch.full((len(real),), label))
        for batched, expected in zip(grads, torch.autograd.grad(loss, params), strict=True):
            assert torch.allclose(batched[label], expected, rtol=0, atol=1e-12)


def test_train_mode_batchnorm_and_unknown_layers_fall_back():
    net = create_model("ConvNetBN", 1, 10, 8)
    net.train()
    params = matched_parameters(list(net.parameters()), "ours")
    assert "couples the samples" in grouped_support(net, params)
    net.eval()
    assert grouped_support(net, params) is None

    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(3, 3))

        def forward(self, x):
            return x @ self.weight

    odd = torch.nn.Sequential(Scale(), torch.nn.Linear(3, 2))
    assert "no per-group gradient rule for Scale" in grouped_support(odd, list(odd.parameters()))


def test_pass_size_follows_activation_size_and_leaves_batchnorm_untouched():
    net = create_model("ConvNetBN", 1, 10, 28)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sample = torch.randn(1, 28, 28)
    assert activation_bytes(net, sample) == 128 * 32 * 32 * 4  # first conv output (28 -> 32)
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert images_per_pass(net, sample, 2560) == 128
    small = create_model("ConvNetW32", 1, 10, 8)
    assert images_per_pass(small, torch.randn(1, 8, 8), 160) > 160  # Digits: one pass


def test_batched_dm_distance_equals_per_class_loop():
    net = _net("ConvNet", (1, 28, 28))
    net.train().requires_grad_(False)
    reals, syn = _batches((1, 28, 28), [8, 7, 9, 8, 8, 6, 8, 8, 8, 8], 2, torch.float32)
    syns = list(syn.split(2))
    reference = _loss_and_image_grad(lambda: looped_mean_embedding_distance(net, reals, syns), syn)
    for pass_images in (None, 5, 1000):
        batched = _loss_and_image_grad(
            lambda p=pass_images: mean_embedding_distance(net, reals, syns, p), syn)
        _assert_close(reference, batched, torch.float32)


def test_dm_keeps_one_pass_for_train_mode_batchnorm():
    net = create_model("ConvNetBN", 1, 10, 8)
    net.train().requires_grad_(False)
    images = torch.randn(40, 1, 8, 8)
    # batch statistics couple the samples: splitting would change the result, so it is not done
    assert torch.equal(embed_in_passes(net, images, pass_images=7), net.embed(images))


def _fashion_shaped(per_class=12):
    return random_dataset("FashionMNIST", per_class, 10)


@pytest.mark.parametrize(
    ("dataset", "method", "ipc", "overrides"),
    [
        ("Digits", "DC", 2, {"iterations": 2, "outer_loop": 3, "inner_loop": 2, **FAST}),
        ("Digits", "DSA", 2, {"iterations": 2, "outer_loop": 2, "inner_loop": 1, **FAST}),
        ("Digits", "DM", 3, {"iterations": 3, **FAST}),
        ("FashionMNIST", "DSA", 1, {"iterations": 1, "model": "ConvNet", "batch_real": 8}),
        ("FashionMNIST", "DM", 2, {"iterations": 2, "model": "ConvNet", "batch_real": 8}),
    ],
)
def test_short_distillation_gives_the_same_images_batched_or_not(dataset, method, ipc, overrides):
    # float64: in float32 a DSA step's rounding differences (loss ~5e-6 relative) move an IPC-1
    # image by ~1 % of its update, which says nothing about whether the two paths compute the same
    data = load_dataset("Digits") if dataset == "Digits" else _fashion_shaped()
    data = LoadedDataset(data.info, data.train_images.double(), data.train_labels,
                         data.test_images.double(), data.test_labels)
    spec = dataclasses.replace(make_spec(dataset, method, ipc), **overrides)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the synthetic images and the networks
    try:
        batched = distill(spec, data, progress=False)
        looped = distill(spec, data, progress=False, batched=False)
    finally:
        torch.set_default_dtype(previous)
    assert batched["images"].dtype == torch.float64
    assert (batched["images"] - looped["images"]).abs().max().item() <= 1e-10
    assert batched["history"] == pytest.approx(looped["history"], rel=1e-10)
