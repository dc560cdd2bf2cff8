"""On a CUDA device: each method's first iterations against the CPU, a batch of replicates against
the runs alone, and the evaluation ensemble against the loop (pytest -m cuda). Skipped, with the
reason, where torch sees no GPU: nothing else in the suite needs one.

Tolerances: on CUDA, convolutions may run in TF32 and sum in another order, so a CUDA run's
images differ from the CPU's by a fraction of how far the run moved them from its initial set
(at most 5 %, checked after 2 iterations at IPC 2, where DC's matching is well conditioned; a
random draw that differed would move them by about the whole change). The batch and the runs
alone both run on the GPU (1 %), and the ensemble's accuracies equal the loop's within 2 points
on 100 test images (a near-tie may flip).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ptmdd_helpers.distill import Replica, distill, initial_synthetic_set, make_spec, run_replicas
from ptmdd_helpers.evaluation.evaluate import evaluate_images
from ptmdd_helpers.evaluation.protocol import EvalProtocol
from ptmdd_helpers.evaluation.training_sets import random_real_subset
from ptmdd_helpers.pools.members import MTT_EXPERT_RECIPE
from ptmdd_helpers.pools.pretrain import train_pool
from ptmdd_helpers.seeding import make_generator

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="torch sees no CUDA device (torch.cuda.is_available() is False)"),
]

SETTINGS = {"model": "ConvNetW32", "batch_real": 16, "init": "real"}


def _fraction_of_change(result: dict, reference: dict, spec, data) -> float:
    initial = initial_synthetic_set(spec, data)[0]
    change = (reference["images"] - initial).abs().max()
    return float((result["images"] - reference["images"]).abs().max() / change)


@pytest.mark.parametrize("method", ["DC", "DSA", "DM"])
def test_cuda_distillation_matches_the_cpu(digits, method):
    spec = make_spec("Digits", method, 2, iterations=2, **SETTINGS)
    on_cpu = distill(spec, digits, device="cpu", progress=False)
    on_cuda = distill(spec, digits, device="cuda", progress=False)
    assert _fraction_of_change(on_cuda, on_cpu, spec, digits) <= 0.05
    assert on_cuda["history"] == pytest.approx(on_cpu["history"], rel=0.05)


def test_cuda_mtt_matches_the_cpu(tmp_path, digits):
    train_pool("Digits", ["ConvNetW32"], 1, dataclasses.replace(MTT_EXPERT_RECIPE, epochs=4),
               root=tmp_path, device="cpu", progress=False, recipe_name="mtt")
    spec = make_spec("Digits", "MTT", 1, iterations=2, model="ConvNetW32", syn_steps=5,
                     expert_epochs=2, max_start_epoch=2, lr_img=10.0, lr_lr=1e-5, n_experts=1)
    on_cpu = distill(spec, digits, device="cpu", progress=False, pool_root=tmp_path)
    on_cuda = distill(spec, digits, device="cuda", progress=False, pool_root=tmp_path)
    assert on_cuda["history"] == pytest.approx(on_cpu["history"], rel=0.05)
    assert float(on_cuda["learned"]["learned_lr"]) == pytest.approx(
        float(on_cpu["learned"]["learned_lr"]), rel=0.05)


@pytest.mark.parametrize("method", ["DC", "DM"])
def test_cuda_batch_of_replicates_matches_the_runs_alone(digits, method):
    base = make_spec("Digits", method, 2, iterations=2, **SETTINGS)
    specs = [dataclasses.replace(base, seed=seed) for seed in range(3)]
    batch = run_replicas([Replica(spec) for spec in specs], digits, device="cuda", progress=False)
    for replica, spec in zip(batch, specs, strict=True):
        alone = distill(spec, digits, device="cuda", progress=False)
        assert _fraction_of_change(replica.result, alone, spec, digits) <= 0.01


def test_cuda_ensemble_matches_the_loop(digits):
    images, labels = random_real_subset(digits, 10, make_generator("test-cuda", "subset"))
    protocol = EvalProtocol(epochs=3, augment="dsa", batch_size=32)
    rows = {flag: evaluate_images(images, labels, digits, ["ConvNetW32"], 3, protocol, ("cuda",),
                                  device="cuda", progress=False, ensemble=flag)
            for flag in (True, False)}
    for together, alone in zip(rows[True], rows[False], strict=True):
        assert together["accuracy"] == pytest.approx(alone["accuracy"], abs=0.02)
