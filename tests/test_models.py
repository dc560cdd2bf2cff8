"""The model registry: every architecture at the study's shapes, reference sizes, vmap, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ptmdd_helpers.networks import models
from ptmdd_helpers.networks.models import create_model, is_batchnorm_model, list_models

# (channels, image side): MNIST, CIFAR, Digits (sklearn 8×8)
SHAPES = {"mnist": (1, 28), "cifar": (3, 32), "digits": (1, 8)}

EXPECTED_NAMES = (
    ["ConvNet"] + [f"ConvNetW{w}" for w in (32, 64, 128, 256)]
    + [f"ConvNetD{d}" for d in range(1, 7)]
    + ["ConvNetAS", "ConvNetAR", "ConvNetAL", "ConvNetASwish", "ConvNetASwishBN"]
    + ["ConvNetNN", "ConvNetBN", "ConvNetLN", "ConvNetIN", "ConvNetGN"]
    + ["ConvNetNP", "ConvNetMP", "ConvNetAP"]
    + ["MLP", "LeNet", "AlexNet", "AlexNetBN", "VGG11", "VGG11BN"]
    + ["ResNet18", "ResNet18BN", "ResNet18BN_AP"]
)


def _inputs(channels: int, side: int | tuple[int, int], batch: int = 2) -> torch.Tensor:
    h, w = (side, side) if isinstance(side, int) else side
    return torch.randn(batch, channels, h, w, generator=torch.Generator().manual_seed(0))


def test_registry_holds_exactly_the_study_names():
    assert list_models() == sorted(EXPECTED_NAMES)


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_and_embed(name, shape):
    channels, side = SHAPES[shape]
    torch.manual_seed(0)
    model = create_model(name, channels, 10, side)
    x = _inputs(channels, side)
    with torch.no_grad():  # train mode: BatchNorm models use the batch statistics of 2 images
        logits, features = model(x), model.embed(x)
    assert logits.shape == (2, 10) and model.num_classes == 10
    assert features.shape == (2, model.feature_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()


@pytest.mark.parametrize(
    ("name", "shape", "feature_dim"),
    [
        ("ConvNet", "mnist", 2048), ("ConvNet", "cifar", 2048), ("ConvNet", "digits", 128),
        ("AlexNet", "mnist", 3072), ("AlexNet", "cifar", 3072), ("AlexNet", "digits", 192),
        ("VGG11", "mnist", 512), ("VGG11", "cifar", 512), ("VGG11", "digits", 512),
        ("ResNet18", "mnist", 512), ("ResNet18", "cifar", 512), ("ResNet18", "digits", 512),
        # the DC _AP variant keeps the final h×w map: 4×4 at 32, 3×3 at 28 (28-14-7-3)
        ("ResNet18BN_AP", "mnist", 512 * 3 * 3), ("ResNet18BN_AP", "cifar", 512 * 4 * 4),
        ("ResNet18BN_AP", "digits", 512),
        ("MLP", "mnist", 128), ("LeNet", "mnist", 84),
    ],
)
def test_feature_dims(name, shape, feature_dim):
    channels, side = SHAPES[shape]
    assert create_model(name, channels, 10, side).feature_dim == feature_dim


def test_convnet_matches_the_reference_at_cifar_and_mnist():
    cifar = create_model("ConvNet", 3, 10, 32)
    # conv 3->128 (3·128·9 + 128 = 3,584) + instance norm (2·128 = 256),
    # 2 × [conv 128->128 (128·128·9 + 128 = 147,584) + instance norm (256)],
    # classifier on 128·4·4 = 2048 features (2048·10 + 10 = 20,490):
    # 3,584 + 256 + 2·(147,584 + 256) + 20,490 = 320,010
    by_hand = (3 * 128 * 9 + 128) + 2 * 128 + 2 * ((128 * 128 * 9 + 128) + 2 * 128) + (
        128 * 4 * 4 * 10 + 10
    )
    assert by_hand == 320_010
    assert sum(p.numel() for p in cifar.parameters()) == 320_010
    kinds = [type(m) for m in cifar.features]
    assert kinds == [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.AvgPool2d] * 3
    assert cifar.features[1].num_groups == 128 and cifar.features[1].affine
    mnist = create_model("ConvNet", 1, 10, 28)
    assert mnist.features[0].padding == (3, 3) and mnist.features[4].padding == (1, 1)
    assert mnist.feature_dim == 2048  # 28 + 2·3 − 2 = 32 -> 16 -> 8 -> 4


# ResNets hold identity `pool`s by design; ConvNetD6 has 6 pools, too many for 32 (2**5 = 32):
# the reference (which stops at D4) would fail there, so its last pool is skipped.
@pytest.mark.parametrize(
    "name", [n for n in list_models() if not n.startswith("ResNet") and n != "ConvNetD6"]
)
@pytest.mark.parametrize("shape", ["mnist", "cifar"])
def test_no_stage_is_skipped_at_reference_sizes(name, shape):
    channels, side = SHAPES[shape]
    model = create_model(name, channels, 10, side)
    assert not any(isinstance(m, nn.Identity) for m in model.modules())


def test_small_inputs_skip_pooling_and_pad_valid_convs():
    deep = create_model("ConvNetD6", 3, 10, 32)  # 32 -> 1 after 5 pools; the 6th is skipped
    assert isinstance(deep.features[-1], nn.Identity) and deep.feature_dim == 128
    lenet = create_model("LeNet", 3, 10, 8)  # 8 -> 4 by conv1; conv2 (5×5) gets padding 2
    assert lenet.features[3].padding == (2, 2)
    with torch.no_grad():
        assert lenet(_inputs(3, 8)).shape == (2, 10)
    wide = create_model("ConvNet", 3, 10, (8, 40))  # rectangular: 8×40 -> 1×5
    assert wide.feature_dim == 128 * 1 * 5
    with torch.no_grad():
        assert wide(_inputs(3, (8, 40))).shape == (2, 10)


def test_forward_is_classifier_of_embed():
    for name in ("ConvNet", "MLP", "LeNet", "AlexNetBN"):
        model = create_model(name, 3, 10, 32).eval()
        x = _inputs(3, 32)
        with torch.no_grad():
            torch.testing.assert_close(model(x), model.classifier(model.embed(x)))


def test_embed_accepts_non_contiguous_and_channels_last_inputs():
    model = create_model("ConvNet", 3, 10, 32).eval()
    x = _inputs(3, 32).transpose(2, 3)
    assert not x.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), model.embed(x.contiguous()))
        last = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(model(last), model(x.contiguous()), atol=1e-5, rtol=1e-4)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model 'ConvNetXL'") as info:
        create_model("ConvNetXL", 3, 10, 32)
    assert all(name in str(info.value) for name in list_models())


@pytest.mark.parametrize("size", [0, -3, (32, 0)])
def test_too_small_image_size_names_the_smallest_size(size):
    with pytest.raises(ValueError, match="smallest size that works is 1x1"):
        create_model("ConvNet", 3, 10, size)


@pytest.fixture
def tiny_model():
    """A throw-away registry entry that declares a minimum size of 4."""
    name = "_TestTinyNet"
    models.register_model(lambda c, n, size: models.ConvNet(c, n, size, width=8, depth=2),
                          name=name, min_size=4)
    yield name
    models._REGISTRY.pop(name)


def test_declared_min_size_is_enforced(tiny_model):
    with pytest.raises(ValueError, match="too small for _TestTinyNet.*works is 4x4"):
        create_model(tiny_model, 1, 10, (3, 8))
    assert create_model(tiny_model, 1, 10, 4).feature_dim == 8 * 2 * 2  # 4+6-2=8 -> 4 -> 2
    with pytest.raises(ValueError, match="already registered"):
        models.register_model(lambda c, n, s: None, name=tiny_model)


def test_bad_image_size_type_is_refused():
    with pytest.raises(ValueError, match="image_size"):
        create_model("ConvNet", 3, 10, (32, 32, 32))


@pytest.mark.parametrize("bad", [(2, 1, 32, 32), (2, 3, 28, 28), (3, 32, 32)])
def test_wrong_input_shape_is_refused(bad):
    model = create_model("ConvNet", 3, 10, 32)
    with pytest.raises(ValueError, match=r"built for inputs of shape \(N, 3, 32, 32\)"):
        model(torch.zeros(bad))


def test_is_batchnorm_model():
    assert is_batchnorm_model(create_model("ConvNetBN", 3, 10, 8))
    assert is_batchnorm_model(create_model("ResNet18BN_AP", 3, 10, 8))
    assert not is_batchnorm_model(create_model("ConvNet", 3, 10, 8))
    assert not is_batchnorm_model(create_model("LeNet", 1, 10, 8))


@pytest.mark.parametrize("name", ["ConvNet", "ConvNetNN", "MLP", "LeNet"])
def test_vmap_over_stacked_parameters_matches_separate_forwards(name):
    torch.manual_seed(0)
    nets = [create_model(name, 3, 10, 32) for _ in range(3)]
    params, buffers = stack_module_state(nets)
    skeleton = create_model(name, 3, 10, 32).to("meta")
    x = _inputs(3, 32, batch=4)

    def call(p: dict, b: dict, data: torch.Tensor) -> torch.Tensor:
        return functional_call(skeleton, (p, b), (data,))

    with torch.no_grad():
        stacked = vmap(call, in_dims=(0, 0, None))(params, buffers, x)
        separate = torch.stack([net(x) for net in nets])
    assert stacked.shape == (3, 4, 10)
    torch.testing.assert_close(stacked, separate, atol=1e-5, rtol=0)
