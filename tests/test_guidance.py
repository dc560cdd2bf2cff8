"""CLoM and CCLoM: gradients reach only the synthetic images; sampling follows the generator."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from ptmdd_helpers.data.datasets import load_dataset
from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools.guidance import Guidance, GuidanceSpec, cclom_loss, validate_guidance
from ptmdd_helpers.pools.members import recipe_identity
from ptmdd_helpers.pools.pretrain import train_pool
from ptmdd_helpers.seeding import make_generator

RECIPE = TrainRecipe(epochs=1)
POOL = recipe_identity(RECIPE)  # the identity guidance specs name the fixture's pool by


@pytest.fixture(scope="module")
def digits_pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    train_pool("Digits", ["ConvNetW32", "MLP"], 2, RECIPE, root=root,
               progress=False)
    return root


def _synthetic(requires_grad=True):
    data = load_dataset("Digits")
    images = torch.randn(20, 1, 8, 8, generator=make_generator("syn")).requires_grad_(requires_grad)
    return data, images, torch.arange(10).repeat_interleave(2)


@pytest.mark.parametrize("kind", ["clom", "cclom"])
def test_gradients_reach_images_and_ptms_stay_frozen(digits_pool, kind):
    data, images, labels = _synthetic()
    guidance = Guidance(GuidanceSpec(kind, "Digits", ("ConvNetW32", "MLP"), 2, epoch=1,
                                     alphas=(3.0,), real_batch=100, pool_recipe=POOL),
                        data, pool_root=digits_pool)
    before = {arch: [{k: v.clone() for k, v in m.state_dict().items()} for m in members]
              for arch, members in guidance.pool.items()}
    loss = guidance.loss(images, labels, make_generator("use", 0))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert images.grad is not None and images.grad.abs().sum() > 0
    for arch, members in guidance.pool.items():
        for model, saved in zip(members, before[arch], strict=True):
            assert not model.training
            assert all(p.grad is None for p in model.parameters())
            assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_cclom_formula_on_hand_made_features():
    class Identity(torch.nn.Module):
        def embed(self, x):
            return x.flatten(1)

    syn = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    real = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    syn_labels, real_labels = torch.tensor([0, 1]), torch.tensor([0, 0, 1])
    # d = 1 - cos: syn0 vs (1, 1-1/√2, 1), syn1 vs (1, 1-1/√2, 0)
    d = torch.tensor([[0.0, 1 - 2 ** -0.5, 1.0], [1.0, 1 - 2 ** -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    expected = (mask * d).sum() / d.sum()
    assert torch.allclose(cclom_loss(Identity(), syn, syn_labels, real, real_labels), expected)


def test_draws_follow_the_generator_and_are_uniform(digits_pool):
    data, _, _ = _synthetic()
    guidance = Guidance(GuidanceSpec("clom", "Digits", ("ConvNetW32", "MLP"), 2, epoch=1, pool_recipe=POOL),
                        data, pool_root=digits_pool)
    ids = {id(m): (arch, i) for arch, ms in guidance.pool.items() for i, m in enumerate(ms)}

    def draws(seed, n=400):
        generator = make_generator("draws", seed)
        return [ids[id(guidance.draw(generator)[1])] for _ in range(n)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    counts = Counter(draws(3))
    assert set(counts) == {("ConvNetW32", 0), ("ConvNetW32", 1), ("MLP", 0), ("MLP", 1)}
    assert all(60 <= c <= 140 for c in counts.values())  # 100 expected each


def test_alpha_per_architecture(digits_pool):
    data, images, labels = _synthetic(requires_grad=False)
    spec = GuidanceSpec("clom", "Digits", ("ConvNetW32", "MLP"), 1, epoch=1, alphas=(0.0, 1.0),
                        pool_recipe=POOL)
    guidance = Guidance(spec, data, pool_root=digits_pool)
    generator = make_generator("alpha")
    for _ in range(10):
        state = generator.get_state()
        arch, _ = guidance.draw(generator)
        generator.set_state(state)
        value = guidance.loss(images, labels, generator)
        assert (value.item() == 0.0) == (arch == "ConvNetW32")


def test_cclom_real_batch_is_capped_at_dataset_size(digits_pool):
    data, _, _ = _synthetic()
    guidance = Guidance(GuidanceSpec("cclom", "Digits", ("MLP",), 1, epoch=1, pool_recipe=POOL), data,
                        pool_root=digits_pool)
    assert guidance.real_batch == len(data.train_labels) == 1437


def test_bad_guidance_is_refused_with_clear_messages():
    with pytest.raises(ValueError, match="2 α values for 3 pool architectures"):
        validate_guidance(GuidanceSpec("clom", "CIFAR10", ("ConvNet", "VGG11", "AlexNet"),
                                       alphas=(1.0, 2.0)), "CIFAR10")
    with pytest.raises(ValueError, match="use CCLoM"):
        validate_guidance(GuidanceSpec("clom", "CIFAR100"), "CIFAR10")
    with pytest.raises(ValueError, match="expect 1×28×28 images"):
        validate_guidance(GuidanceSpec("cclom", "MNIST5k"), "Digits")
    validate_guidance(GuidanceSpec("cclom", "CIFAR100"), "CIFAR10")  # CCLoM across label spaces
