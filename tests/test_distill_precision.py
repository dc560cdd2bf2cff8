"""bf16 distillation (``precision="bf16"``): which operations run in bfloat16, that the images and
their gradients stay float32, determinism and resume, and that fp32 run ids did not move."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ptmdd_helpers.distill as distill_package
from ptmdd_helpers.distill import distill, make_spec
from ptmdd_helpers.networks.models import create_model
from ptmdd_helpers.specs import spec_id
from ptmdd_helpers.store.runs import Workspace, distill_run

FAST = {"model": "ConvNetW32", "batch_real": 16}
MTT = {"syn_steps": 3, "max_start_epoch": 2, "lr_img": 10.0, "n_experts": 1}


class OutputDtypes(TorchDispatchMode):
    """The dtypes of each operation's floating-point outputs: op name -> set of dtype names."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, set[str]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                name = func.__name__.split(".")[0]
                self.seen.setdefault(name, set()).add(str(t.dtype).removeprefix("torch."))
        return out


class StraightExperts:
    """Expert trajectories in memory: θ_e = θ_0 + e · a fixed small step."""

    def __init__(self) -> None:
        net = create_model("ConvNetW32", 1, 10, (8, 8))
        self.start = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
        self.step = torch.randn(self.start.shape, generator=torch.Generator().manual_seed(0)) * 1e-2

    def flat(self, expert, epoch, names):
        return self.start + epoch * self.step


def spec_of(method: str, precision: str = "bf16", **changes):
    extra = MTT if method == "MTT" else {}
    return make_spec("Digits", method, 1, precision=precision,
                     **{"iterations": 2, **FAST, **extra, **changes})


@pytest.mark.parametrize("method", ["DC", "DSA", "DM", "MTT"])
def test_bf16_runs_convolutions_in_bf16_and_keeps_norms_losses_images_and_gradients_in_fp32(
        method, digits, monkeypatch):
    from conftest import replace_iteration

    real_iteration, grads = distill_package.get_method(method).iteration, []

    def watched(state):
        loss = real_iteration(state)
        grads.append(state.images.grad)
        return loss

    replace_iteration(monkeypatch, method, watched)
    experts = StraightExperts() if method == "MTT" else None
    with OutputDtypes() as log:
        out = distill(spec_of(method), digits, progress=False, resources=experts)
    assert log.seen["convolution"] == {"bfloat16"}
    assert log.seen["native_group_norm"] == {"float32"}  # ConvNet's instance norm
    assert out["images"].dtype == torch.float32
    assert all(g is not None and g.dtype == torch.float32 and bool(g.abs().sum() > 0)
               for g in grads)
    if method in ("DC", "DSA", "MTT"):  # a classification loss: in float32
        assert log.seen["nll_loss_forward"] == {"float32"}
    if method in ("DC", "DSA"):  # the gradients matched come out of bf16 kernels, then float32
        assert "bfloat16" in log.seen["convolution_backward"]


def test_bf16_is_deterministic_close_to_fp32_and_gets_its_own_run_id(digits):
    bf16 = spec_of("DM", iterations=5)
    a, b = distill(bf16, digits, progress=False), distill(bf16, digits, progress=False)
    assert torch.equal(a["images"], b["images"]) and a["history"] == b["history"]
    fp32 = distill(dataclasses.replace(bf16, precision="fp32"), digits, progress=False)
    gap = (a["images"] - fp32["images"]).abs().max().item()
    assert 0 < gap < 0.1, gap
    # the field was added at its default: fp32 runs keep the ids they had before it existed
    assert spec_id(make_spec("Digits", "DM", 1)) == "distill-0845a23301942f40"
    assert spec_id(make_spec("Digits", "DM", 1, precision="fp32")) == "distill-0845a23301942f40"
    assert spec_id(bf16) != spec_id(dataclasses.replace(bf16, precision="fp32"))


def test_an_interrupted_bf16_run_resumes_to_the_uninterrupted_result(tmp_path, interrupt_once):
    spec = spec_of("DSA", iterations=6)
    straight = distill_run(spec, Workspace(tmp_path / "a", progress=False, checkpoint_every=2,
                                           device="cpu"))
    seen = interrupt_once("DSA")
    workspace = Workspace(tmp_path / "b", progress=False, checkpoint_every=2, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        distill_run(spec, workspace)
    resumed = distill_run(spec, workspace)
    assert seen == [0, 1, 2, 3, 4, 5, 4, 5]
    assert torch.equal(straight.tensors()["images"], resumed.tensors()["images"])
    assert straight.metrics["loss_history"] == resumed.metrics["loss_history"]


def test_an_unknown_precision_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        make_spec("Digits", "DM", 1, precision="fp16")


def test_the_precision_study_pairs_fp32_and_bf16_by_seed_through_the_store(tmp_path,
                                                                          benchmark_script):
    module = benchmark_script("precision_distill")
    sets = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}",
            "distill.DM.iterations=5", "eval.epochs=5"]
    (result,) = module.main(["--profile", "smoke", "--seeds", "0,1", "--methods", "DM",
                             *[item for pair in (("--set", s) for s in sets) for item in pair]])
    differences = [row["bf16"] - row["fp32"] for row in result["rows"]]
    assert result["difference"] == pytest.approx(sum(differences) / 2)
    assert result["low"] <= result["difference"] <= result["high"]
    runs = list((tmp_path / "store").glob("distill-*/spec.json"))
    assert sorted(json_precision(p) for p in runs) == ["bf16", "bf16", "fp32", "fp32"]


def json_precision(path) -> str:
    import json

    return json.loads(path.read_text()).get("precision", "fp32")
