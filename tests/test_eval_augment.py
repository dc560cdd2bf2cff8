"""The DC reference's evaluation augmentation: parameters, defaults, one op per image, runs."""

from __future__ import annotations

import pytest
import torch

import ptmdd_helpers.evaluation.evaluate as ev
from ptmdd_helpers.data.eval_augment import (
    DC_AUGMENTS,
    DCAugConfig,
    apply_dc_params,
    dc_augment,
    dc_reference_augment,
    eval_augmenter,
    sample_dc_params,
)
from ptmdd_helpers.distill import protocol_for
from ptmdd_helpers.evaluation.evaluate import evaluate_images, train_and_test
from ptmdd_helpers.evaluation.protocol import AUGMENTS, EvalProtocol
from ptmdd_helpers.evaluation.training_sets import random_real_subset
from ptmdd_helpers.seeding import make_generator

ARCH = "ConvNetW32"
NEW_MODES = ("crop_scale_rotate", "crop_noise")


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def asymmetric_images(n: int, c: int = 1, h: int = 28, w: int = 28) -> torch.Tensor:
    """``n`` copies of an image with structure everywhere (no op leaves it unchanged)."""
    yy, xx = torch.meshgrid(torch.arange(h) * 1.0, torch.arange(w) * 1.0, indexing="ij")
    image = torch.sin(xx / 3) + torch.cos(yy / 4) + xx * yy / (h * w) + 0.5
    return image.expand(n, c, h, w).clone()


def forced(params: dict, op_index: int) -> dict:
    """The same parameters with every image's choice set to ``op_index``."""
    return {**params, "choice": torch.full_like(params["choice"], op_index)}


# --------------------------------------------------------------------------- parameters, defaults


def test_modes_use_the_reference_parameter_values():
    assert set(DC_AUGMENTS) == set(NEW_MODES)
    assert set(AUGMENTS) == {"none", "dsa", *NEW_MODES}
    for mode, ops in (("crop_scale_rotate", ("crop", "scale", "rotate")),
                      ("crop_noise", ("crop", "noise"))):
        config = DC_AUGMENTS[mode]
        assert config.ops == ops
        assert (config.crop, config.scale, config.rotate, config.noise) == (4, 0.2, 45.0, 0.001)
        assert EvalProtocol(augment=mode).augment == mode
    with pytest.raises(ValueError, match="crop_noise"):
        EvalProtocol(augment="crop_flip")
    with pytest.raises(ValueError, match="subset"):
        DCAugConfig(ops=("crop", "flip"))


def test_dc_defaults_follow_the_reference_and_explicit_augment_wins():
    assert protocol_for("DC").augment == "none"  # no dataset/arch: as before (run ids kept)
    assert protocol_for("DC") == EvalProtocol()
    assert protocol_for("DC", dataset="MNIST").augment == "crop_scale_rotate"
    assert protocol_for("dc", dataset="MNIST5k", arch="ConvNet").augment == "crop_scale_rotate"
    assert protocol_for("DC", dataset="MNIST", arch="ConvNetBN").augment == "crop_noise"
    assert protocol_for("DC", dataset="CIFAR10", arch="ConvNetBN").augment == "crop_noise"
    assert protocol_for("DC", dataset="FashionMNIST", arch="ConvNet").augment == "none"
    assert protocol_for("DC", dataset="MNIST5k8").augment == "none"  # 8x8, not the reference's
    assert protocol_for("DC", dataset="Digits", arch="ConvNetW32").augment == "none"
    for method in ("DSA", "DM"):
        assert protocol_for(method, dataset="MNIST", arch="ConvNetBN").augment == "dsa"
        assert protocol_for(method, dataset="MNIST") == protocol_for(method)
    assert protocol_for("DC", dataset="MNIST", augment="none").augment == "none"
    assert protocol_for("DC", dataset="MNIST", arch="ConvNetBN", augment="dsa").augment == "dsa"
    assert protocol_for("DC", dataset="MNIST", epochs=7).epochs == 7
    assert dc_reference_augment(None, None) is None
    # a validation split is evaluated as the dataset it is carved from
    for name in ("MNIST", "MNIST5k", "FashionMNIST", "MNIST5k8"):
        assert protocol_for("DC", dataset=f"{name}-val") == protocol_for("DC", dataset=name)


# --------------------------------------------------------------------------- behaviour


def test_draws_cover_the_reference_ranges_and_choose_uniformly():
    n = 30000
    params = sample_dc_params(DC_AUGMENTS["crop_scale_rotate"], gen(1), n, (1, 28, 28))
    counts = torch.bincount(params["choice"], minlength=3)
    assert counts.sum() == n and (abs(counts / n - 1 / 3) < 0.02).all()
    for key in ("dy", "dx"):
        assert (params[key].min(), params[key].max()) == (-4, 4)
        assert len(params[key].unique()) == 9
    for key in ("fx", "fy"):
        assert 0.8 <= params[key].min() < 0.801 and 1.199 < params[key].max() <= 1.2
    assert -45 <= params["angle"].min() < -44.9 and 44.9 < params["angle"].max() <= 45
    noise = sample_dc_params(DC_AUGMENTS["crop_noise"], gen(2), 200, (1, 28, 28))["noise"]
    assert noise.shape == (200, 1, 28, 28)
    assert abs(float(noise.std()) - 0.001) < 2e-5 and abs(float(noise.mean())) < 2e-5


@pytest.mark.parametrize("mode", NEW_MODES)
def test_reproducible_from_the_generator_alone_shapes_kept_input_untouched(mode):
    x = torch.randn(64, 3, 12, 20)
    before = x.clone()
    state = torch.get_rng_state()
    first = dc_augment(x, DC_AUGMENTS[mode], gen(5))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is neither used nor set
    assert torch.equal(first, dc_augment(x, DC_AUGMENTS[mode], gen(5)))
    assert not torch.equal(first, dc_augment(x, DC_AUGMENTS[mode], gen(6)))
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.equal(x, before)
    callable_ = eval_augmenter(mode, flip=False)
    assert torch.equal(callable_(x, gen(5)), first)  # the protocol's callable is this mode
    # the same number of draws whatever the images: the stream after a call does not depend on them
    g1, g2 = gen(9), gen(9)
    dc_augment(x, DC_AUGMENTS[mode], g1)
    dc_augment(torch.zeros_like(x), DC_AUGMENTS[mode], g2)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


@pytest.mark.parametrize("mode", NEW_MODES)
def test_each_image_gets_exactly_its_one_chosen_op(mode):
    config = DC_AUGMENTS[mode]
    x = asymmetric_images(48)
    params = sample_dc_params(config, gen(3), 48, (1, 28, 28))
    out = apply_dc_params(x, config, params)
    singles = [apply_dc_params(x, config, forced(params, k)) for k in range(len(config.ops))]
    for i, k in enumerate(params["choice"].tolist()):
        assert torch.equal(out[i], singles[k][i])
        identity_crop = config.ops[k] == "crop" and params["dy"][i] == params["dx"][i] == 0
        if not identity_crop:
            assert not torch.equal(out[i], x[i])
        for j in range(len(config.ops)):  # the other ops would have given another image
            if j != k and not (config.ops[j] == "crop" and params["dy"][i] == params["dx"][i] == 0):
                assert (out[i] - singles[j][i]).abs().max() > 1e-3
    assert len(set(params["choice"].tolist())) == len(config.ops)  # every op occurs here


def test_each_op_does_what_the_reference_op_does():
    x = torch.randn(1, 2, 9, 9)
    base = {"choice": torch.zeros(1, dtype=torch.long)}
    # crop: out[i, j] = x[i + dy, j + dx], zeros outside (pad 4, crop the original size)
    crop = DCAugConfig(ops=("crop",))
    out = apply_dc_params(x, crop, {**base, "dy": torch.tensor([-4]), "dx": torch.tensor([3])})
    expected = torch.zeros_like(x)
    expected[..., 4:, :6] = x[..., :5, 3:]
    assert torch.equal(out, expected)
    # scale: resize about the centre; fx = 0.5 halves the width, zeros outside
    scale = DCAugConfig(ops=("scale",))
    out = apply_dc_params(x, scale, {**base, "fx": torch.tensor([0.5]), "fy": torch.tensor([1.0])})
    expected = torch.zeros_like(x)
    expected[..., 2:7] = x[..., 0::2]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # rotate: about the centre; 90 degrees is a quarter turn of the pixel grid
    rotate = DCAugConfig(ops=("rotate",))
    out = apply_dc_params(x, rotate, {**base, "angle": torch.tensor([90.0])})
    torch.testing.assert_close(out, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5, rtol=0)
    corner = apply_dc_params(x, rotate, {**base, "angle": torch.tensor([45.0])})
    assert torch.equal(corner[..., 0, 0], torch.zeros(1, 2))  # zeros where nothing maps
    # noise only: changes of ~0.001 everywhere
    noise = DCAugConfig(ops=("noise",))
    big = torch.randn(100, 1, 28, 28)
    delta = dc_augment(big, noise, gen(4)) - big
    assert (delta != 0).float().mean() > 0.999
    assert abs(float(delta.std()) - 0.001) < 3e-5 and float(delta.abs().max()) < 0.006


# --------------------------------------------------------------------------- in the protocol


@pytest.fixture(scope="module")
def subset5(digits):
    """5 random real Digits images per class."""
    return random_real_subset(digits, 5, make_generator("test-eval-augment", "subset5"))


@pytest.mark.parametrize("mode", NEW_MODES)
def test_evaluation_augments_training_batches_only(digits, subset5, monkeypatch, mode):
    x, y = subset5
    seen: list[torch.Tensor] = []
    real_augmenter = ev._augmenter

    def recording(protocol, data):
        augment = real_augmenter(protocol, data)

        def wrapped(batch, generator):
            seen.append(batch.clone())
            return augment(batch, generator)

        return wrapped

    monkeypatch.setattr(ev, "_augmenter", recording)
    test_before = digits.test_images.clone()
    protocol = protocol_for("DC", epochs=2, augment=mode, batch_size=16)
    result = train_and_test(x, y, digits, ARCH, protocol, ("eval-augment", mode))
    assert 0.0 <= result["accuracy"] <= 1.0
    assert sum(len(b) for b in seen) == 2 * len(x)  # every training image, every epoch
    flat = x.flatten(1)
    for batch in seen:  # only training images were augmented
        assert (batch.flatten(1)[:, None] == flat[None]).all(-1).any(1).all()
    assert torch.equal(digits.test_images, test_before)


@pytest.mark.parametrize("mode", NEW_MODES)
def test_short_evaluation_runs_in_each_mode_loop_and_ensemble(digits, subset5, mode):
    protocol = protocol_for("DC", epochs=3, augment=mode, batch_size=16)
    kwargs = dict(progress=False)
    loop = evaluate_images(*subset5, digits, [ARCH], 2, protocol, ("short", mode),
                           ensemble=False, **kwargs)
    again = evaluate_images(*subset5, digits, [ARCH], 2, protocol, ("short", mode),
                            ensemble=False, **kwargs)
    vmapped = evaluate_images(*subset5, digits, [ARCH], 2, protocol, ("short", mode),
                              ensemble=True, **kwargs)
    assert [r["accuracy"] for r in loop] == [r["accuracy"] for r in again]
    for a, b in zip(loop, vmapped, strict=True):  # same draws; float arithmetic aside
        assert abs(a["accuracy"] - b["accuracy"]) <= 0.02
    none = evaluate_images(*subset5, digits, [ARCH], 1, protocol_for("DC", epochs=3, batch_size=16),
                           ("short", mode), ensemble=False, **kwargs)
    assert none[0]["train_accuracy"] != loop[0]["train_accuracy"]  # the mode changed training
