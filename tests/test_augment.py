"""Differentiable Siamese Augmentation: shared parameters, op semantics, gradients, determinism."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ptmdd_helpers.data.augment import (
    OPS,
    DSAConfig,
    DSAParams,
    apply_params,
    augment_per_sample,
    sample_params,
    siamese_augment,
)


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def smooth_image(c: int = 3, h: int = 32, w: int = 32) -> torch.Tensor:
    """A (1, C, H, W) smooth, asymmetric image."""
    yy, xx = torch.meshgrid(torch.arange(h) * 1.0, torch.arange(w) * 1.0, indexing="ij")
    channels = [torch.sin(xx / 5) + torch.cos(yy / 7), xx / w, yy / h * 2 - 0.3]
    return torch.stack(channels[:c])[None]


def draw(op: str, seed: int = 0, **kwargs) -> DSAParams:
    """Shared parameters for a forced single op."""
    return sample_params(DSAConfig(ops=(op,)), gen(seed), **kwargs)


# --- config and API -------------------------------------------------------------------------------


def test_config_defaults_and_without_flip():
    config = DSAConfig()
    assert config.ops == ("color", "crop", "cutout", "flip", "scale", "rotate")
    assert config.without_flip().ops == ("color", "crop", "cutout", "scale", "rotate")
    assert DSAConfig.from_strategy("color_crop_cutout_flip_scale_rotate") == config


def test_unknown_op_raises_listing_valid_ones():
    with pytest.raises(ValueError, match="rotate"):
        DSAConfig(ops=("color", "jitter"))
    with pytest.raises(ValueError, match="valid ops"):
        apply_params(torch.zeros(1, 1, 4, 4), DSAParams("jitter", {"a": torch.zeros(1)}))


def test_mismatched_parameter_batch_raises():
    params = sample_params(DSAConfig(ops=("crop",)), gen(0), batch_size=3)
    with pytest.raises(ValueError):
        apply_params(torch.zeros(5, 3, 32, 32), params)


def test_without_flip_never_draws_flip():
    config = DSAConfig().without_flip()
    g = gen(1)
    drawn = {sample_params(config, g).op for _ in range(200)}
    assert "flip" not in drawn
    assert drawn == set(config.ops)


# --- Siamese (shared) mode ------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_same_transform_on_batches_of_different_sizes(op):
    x = torch.randn(7, 3, 32, 32, generator=gen(123))
    config = DSAConfig(ops=(op,))
    for seed in range(5):
        big, small = siamese_augment([x, x[:3]], config, gen(seed))
        assert big.shape == x.shape and small.shape == (3, 3, 32, 32)
        torch.testing.assert_close(big[:3], small, rtol=0, atol=0)


def test_default_strategy_shared_over_many_seeds():
    x = torch.randn(7, 3, 32, 32, generator=gen(7))
    ops = set()
    for seed in range(40):
        params = sample_params(DSAConfig(), gen(seed))
        ops.add(params.op)
        big, small = siamese_augment([x, x[:3]], DSAConfig(), gen(seed))
        torch.testing.assert_close(big[:3], small, rtol=0, atol=0)
    assert ops == set(OPS)


@pytest.mark.parametrize("op", OPS)
def test_constant_batches_of_different_sizes_identical(op):
    config = DSAConfig(ops=(op,))
    image = smooth_image()
    for seed in range(3):
        a, b = siamese_augment([image.expand(6, -1, -1, -1), image.expand(2, -1, -1, -1)],
                               config, gen(seed))
        # Every image of both batches got the very same transform.
        assert torch.equal(a, a[:1].expand_as(a))
        assert torch.equal(b, a[:2])


def test_shared_draw_count_independent_of_batch_size():
    g1, g2 = gen(5), gen(5)
    siamese_augment([torch.randn(2, 3, 32, 32)], DSAConfig(), g1)
    siamese_augment([torch.randn(50, 3, 32, 32), torch.randn(9, 3, 32, 32)], DSAConfig(), g2)
    assert torch.equal(g1.get_state(), g2.get_state())


# --- each op on hand-made images ------------------------------------------------------------------


def test_flip_reverses_columns_or_is_identity():
    x = smooth_image()
    seen = set()
    for seed in range(20):
        params = draw("flip", seed)
        out = apply_params(x, params)
        flipped = bool(params.values["flip"].item())
        seen.add(flipped)
        assert torch.equal(out, x.flip(-1) if flipped else x)
    assert seen == {True, False}


def test_crop_is_integer_shift_with_zero_fill():
    x = smooth_image() + 5.0  # no zeros inside the image
    shifts = set()
    for seed in range(20):
        params = draw("crop", seed)
        dy, dx = int(params.values["dy"]), int(params.values["dx"])
        assert -4 <= dy <= 4 and -4 <= dx <= 4  # int(0.125 * 32 + 0.5) = 4
        shifts.add((dy, dx))
        out = apply_params(x, params)
        padded = F.pad(x, [4, 4, 4, 4])
        expected = padded[..., 4 + dy:4 + dy + 32, 4 + dx:4 + dx + 32]
        assert torch.equal(out, expected)
    assert len(shifts) > 5


def test_cutout_zeroes_square_of_half_side():
    x = torch.ones(1, 3, 32, 32)
    sides = []
    for seed in range(30):
        params = draw("cutout", seed)
        out = apply_params(x, params)
        zero = out[0, 0] == 0
        assert torch.equal(out == 0, zero.expand_as(out))  # same mask for every channel
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        # The zeros form one axis-aligned rectangle...
        assert zero.sum() == len(rows) * len(cols)
        assert len(rows) == 0 or rows.max() - rows.min() + 1 == len(rows)
        # ... a 16 x 16 square, clipped at the borders only.
        top, left = int(params.values["top"]), int(params.values["left"])
        assert len(rows) == min(top + 16, 32) - max(top, 0)
        assert len(cols) == min(left + 16, 32) - max(left, 0)
        sides.append((len(rows), len(cols)))
    assert (16, 16) in sides


def test_brightness_adds_constant_within_half():
    x = smooth_image()
    for seed in range(10):
        params = draw("color", seed)
        params = DSAParams("color", {"brightness": params.values["brightness"],
                                     "saturation": torch.ones(1), "contrast": torch.ones(1)})
        delta = apply_params(x, params) - x
        assert -0.5 <= delta.mean().item() <= 0.5
        torch.testing.assert_close(delta, torch.full_like(delta, delta.mean().item()))


def test_saturation_keeps_channel_mean_and_contrast_keeps_image_mean():
    x = smooth_image()
    for seed in range(10):
        values = draw("color", seed).values
        assert 0.0 <= values["saturation"].item() <= 2.0
        assert 0.5 <= values["contrast"].item() <= 1.5
        saturated = apply_params(x, DSAParams("color", {"brightness": torch.zeros(1),
                                                        "saturation": values["saturation"],
                                                        "contrast": torch.ones(1)}))
        torch.testing.assert_close(saturated.mean(1), x.mean(1))
        contrasted = apply_params(x, DSAParams("color", {"brightness": torch.zeros(1),
                                                         "saturation": torch.ones(1),
                                                         "contrast": values["contrast"]}))
        torch.testing.assert_close(contrasted.mean(), x.mean())
        # The contrast factor scales deviations from the image mean.
        torch.testing.assert_close(contrasted - x.mean(), (x - x.mean()) * values["contrast"])


def test_color_matches_reference_formula():
    x = torch.randn(2, 3, 8, 8, generator=gen(0))
    b, s, c = 0.2, 1.3, 0.7
    expected = x + (b)
    expected = (expected - expected.mean(1, keepdim=True)) * s + expected.mean(1, keepdim=True)
    m = expected.mean((1, 2, 3), keepdim=True)
    expected = (expected - m) * c + m
    params = DSAParams("color", {"brightness": torch.tensor([b]), "saturation": torch.tensor([s]),
                                 "contrast": torch.tensor([c])})
    torch.testing.assert_close(apply_params(x, params), expected)


@pytest.mark.parametrize("op", ["scale", "rotate"])
def test_scale_rotate_keep_constant_interior(op):
    x = torch.full((1, 3, 32, 32), 0.7)
    for seed in range(5):
        out = apply_params(x, draw(op, seed))
        torch.testing.assert_close(out[..., 8:24, 8:24], x[..., 8:24, 8:24])


def test_scale_and_rotate_parameter_ranges():
    for seed in range(30):
        scale = draw("scale", seed).values
        for key in ("sx", "sy"):
            assert 1 / 1.2 <= scale[key].item() <= 1.2
        assert abs(draw("rotate", seed).values["angle"].item()) <= math.radians(15)


def test_rotate_matches_torchvision_on_smooth_image():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    x = smooth_image()
    for seed in range(3):
        params = draw("rotate", seed)
        degrees = math.degrees(params.values["angle"].item())
        expected = tvf.rotate(x, degrees, interpolation=tvf.InterpolationMode.BILINEAR)
        out = apply_params(x, params)
        torch.testing.assert_close(out[..., 8:24, 8:24], expected[..., 8:24, 8:24],
                                   atol=1e-4, rtol=0)


def test_scale_matches_hand_computed_grid():
    x = smooth_image()
    sx, sy = 1.1, 0.9
    out = apply_params(x, DSAParams("scale", {"sx": torch.tensor([sx]), "sy": torch.tensor([sy])}))
    lin = torch.linspace(-1, 1, 32)
    grid = torch.stack(torch.meshgrid(lin * sx, lin * sy, indexing="xy"), -1)[None]
    expected = F.grid_sample(x, grid, align_corners=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_gradients_flow_to_synthetic_images(op):
    real = torch.randn(8, 3, 32, 32, generator=gen(1))
    syn = torch.randn(2, 3, 32, 32, generator=gen(2)).requires_grad_()
    config = DSAConfig(ops=(op,))
    real_out, syn_out = siamese_augment([real, syn], config, gen(3))
    assert not real_out.requires_grad and syn_out.requires_grad
    (syn_out.sum() + (syn_out ** 2).sum()).backward()
    assert syn.grad is not None
    assert torch.isfinite(syn.grad).all() and syn.grad.abs().sum() > 0


def test_per_sample_gradients_flow():
    syn = torch.randn(4, 3, 16, 16, generator=gen(2)).requires_grad_()
    for seed in range(6):
        syn.grad = None
        augment_per_sample(syn, DSAConfig(), gen(seed)).pow(2).sum().backward()
        assert torch.isfinite(syn.grad).all() and syn.grad.abs().sum() > 0


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_output_different_seeds_differ():
    x = torch.randn(4, 3, 32, 32, generator=gen(0))
    for seed in range(5):
        a = siamese_augment([x], DSAConfig(), gen(seed))[0]
        b = siamese_augment([x], DSAConfig(), gen(seed))[0]
        assert torch.equal(a, b)
        assert torch.equal(augment_per_sample(x, DSAConfig(), gen(seed)),
                           augment_per_sample(x, DSAConfig(), gen(seed)))
    outputs = [siamese_augment([x], DSAConfig(), gen(seed))[0] for seed in range(10)]
    distinct = {tuple(o.flatten()[:64].tolist()) for o in outputs}
    assert len(distinct) >= 8
    drawn = [sample_params(DSAConfig(), gen(seed)) for seed in range(10)]
    assert len({p.op for p in drawn}) > 1


def test_global_rng_untouched():
    state = torch.get_rng_state()
    siamese_augment([torch.randn(3, 3, 32, 32, generator=gen(0))], DSAConfig(), gen(1))
    augment_per_sample(torch.randn(3, 3, 32, 32, generator=gen(0)), DSAConfig(), gen(1))
    assert torch.equal(state, torch.get_rng_state())


# --- per-sample mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["crop", "scale", "rotate", "color", "cutout"])
def test_per_sample_transforms_differ(op):
    images = smooth_image().expand(8, -1, -1, -1).contiguous()
    out = augment_per_sample(images, DSAConfig(ops=(op,)), gen(0))
    assert out.shape == images.shape
    assert not torch.equal(out, out[:1].expand_as(out))
    params = sample_params(DSAConfig(ops=(op,)), gen(0), batch_size=8, image_shape=(3, 32, 32))
    assert all(v.shape[0] == 8 for v in params.values.values())


def test_per_sample_one_op_per_call():
    images = torch.randn(6, 3, 32, 32, generator=gen(0))
    params = sample_params(DSAConfig(), gen(4), batch_size=6, image_shape=(3, 32, 32))
    torch.testing.assert_close(augment_per_sample(images, DSAConfig(), gen(4)),
                               apply_params(images, params), rtol=0, atol=0)


def test_digit_sized_images():
    x = torch.randn(5, 1, 28, 28, generator=gen(0))
    config = DSAConfig().without_flip()
    for seed in range(12):
        big, small = siamese_augment([x, x[:2]], config, gen(seed))
        assert big.shape == x.shape
        torch.testing.assert_close(big[:2], small, rtol=0, atol=0)
    dy = sample_params(DSAConfig(ops=("crop",)), gen(0), image_shape=(1, 28, 28)).values["dy"]
    assert -4 <= int(dy) <= 4  # int(0.125 * 28 + 0.5) = 4


def test_values_on_generator_device_then_moved():
    params = sample_params(DSAConfig(ops=("rotate",)), gen(0), device="cpu")
    assert params.values["angle"].device.type == "cpu"
    if torch.cuda.is_available():
        x = torch.randn(2, 3, 32, 32, device="cuda")
        out = siamese_augment([x], DSAConfig(), gen(0))[0]
        assert out.device == x.device
