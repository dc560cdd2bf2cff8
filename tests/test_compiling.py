"""Compiled evaluation training (ptmdd_helpers.networks.compiling): what compiles, that its gradients agree
with eager's, that it repeats, and that a failing compilation falls back to eager training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ptmdd_helpers.distill import protocol_for
from ptmdd_helpers.evaluation.evaluate import evaluate_images
from ptmdd_helpers.evaluation.training_sets import random_real_subset
from ptmdd_helpers.networks import compiling
from ptmdd_helpers.networks.models import create_model
from ptmdd_helpers.seeding import make_generator
from ptmdd_helpers.store.runs import Workspace

CPU = torch.device("cpu")


@pytest.fixture
def fresh_probes():
    """Forget this process's probe verdicts before and after the test."""
    compiling._probe.cache_clear()
    yield
    compiling._probe.cache_clear()


def test_float64_statistics_group_norm_matches_torch():
    x = torch.randn(4, 32, 8, 8, generator=torch.Generator().manual_seed(0)) * 3 + 2
    weight, bias = torch.rand(32) + 0.5, torch.randn(32)
    out, mean, rstd = compiling.group_norm_float64_statistics(x, weight, bias, 4, 32, 64, 32, 1e-5)
    assert torch.allclose(out, F.group_norm(x, 32, weight, bias, 1e-5), atol=1e-5)
    assert torch.allclose(mean, x.mean((2, 3)), atol=1e-6)
    assert mean.shape == rstd.shape == (4, 32) and out.dtype == torch.float32


def test_only_convnetw32_on_cpu_in_fp32_compiles():
    assert compiling.compile_skip_reason("ConvNetW32", CPU, "fp32") is None
    assert "ConvNet is not compiled" in compiling.compile_skip_reason("ConvNet", CPU, "fp32")
    assert "CPU only" in compiling.compile_skip_reason("ConvNetW32", torch.device("cuda"), "fp32")
    assert "fp32 only" in compiling.compile_skip_reason("ConvNetW32", CPU, "bf16")
    net = create_model("ConvNet", 1, 10, (8, 8))
    assert compiling.compiled_for_training(net, "ConvNet", (1, 8, 8), 10, (10,), CPU, "fp32",
                                           compile=True) is None


def test_batch_sizes_of_an_epoch():
    assert compiling.batch_sizes(10, 256) == (10,)
    assert compiling.batch_sizes(512, 256) == (256,)
    assert compiling.batch_sizes(500, 256) == (256, 244)


def test_compile_default_and_workspace_option(monkeypatch, tmp_path, fresh_probes):
    monkeypatch.setenv("PTMDD_COMPILE", "0")
    assert compiling.compile_default() is False
    net = create_model("ConvNetW32", 1, 10, (8, 8))
    assert compiling.compiled_for_training(net, "ConvNetW32", (1, 8, 8), 10, (256,), CPU, "fp32") is None
    monkeypatch.delenv("PTMDD_COMPILE")
    assert compiling.compile_default() is True
    # the default compiles only where it pays: batches of MIN_BATCH images or more
    assert compiling.compiled_for_training(net, "ConvNetW32", (1, 8, 8), 10, (10,), CPU, "fp32") is None
    assert compiling._probe.cache_info().currsize == 0  # decided without compiling anything
    with pytest.raises(ValueError, match="compile"):
        Workspace(tmp_path, compile="yes")


def test_compiled_gradients_agree_with_eager_and_training_repeats(digits, fresh_probes):
    images, labels = random_real_subset(digits, 2, make_generator("test-compiling"))
    network = create_model("ConvNetW32", 1, 10, (8, 8))
    compiled = compiling.compiled_for_training(network, "ConvNetW32", (1, 8, 8), 10, (20,), CPU,
                                               "fp32", compile=True)
    assert compiled is not None
    eager = compiling.parameter_gradients(network, images, labels)
    fused = compiling.parameter_gradients(compiled, images, labels)
    assert 0 < compiling._relative_errors(fused, eager) <= compiling.TOLERANCE  # not the same code

    protocol = protocol_for("DC", epochs=20)
    rows = [evaluate_images(images, labels, digits, ["ConvNetW32"], 2, protocol, ("test", 0),
                            progress=False, compile=True) for _ in range(2)]
    assert all(row["compiled"] for row in rows[0])
    assert [r["accuracy"] for r in rows[0]] == [r["accuracy"] for r in rows[1]]  # bitwise again
    eager_rows = evaluate_images(images, labels, digits, ["ConvNetW32"], 2, protocol, ("test", 0),
                                 progress=False, compile=False)
    assert not any(row["compiled"] for row in eager_rows)
    assert all(row["accuracy"] > 0.3 for row in rows[0] + eager_rows)  # both train (10 classes)


def test_failing_compilation_trains_eagerly_with_a_warning(digits, fresh_probes, monkeypatch):
    def no_compiler(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(compiling, "inductor_float64_group_norm", no_compiler)
    images, labels = random_real_subset(digits, 1, make_generator("test-compiling"))
    with pytest.warns(RuntimeWarning, match="trained eagerly, not compiled: compiling it failed"):
        rows = evaluate_images(images, labels, digits, ["ConvNetW32"], 2,
                               protocol_for("DC", epochs=2), ("test", 0), progress=False,
                               compile=True)
    assert [row["compiled"] for row in rows] == [False, False]
    with pytest.raises(ValueError, match="compile must be"):
        evaluate_images(images, labels, digits, ["ConvNetW32"], 1, protocol_for("DC", epochs=1),
                        ("test", 0), progress=False, compile="yes")


def test_compile_evaluate_benchmark_pairs_eager_and_compiled(benchmark_script, tmp_path,
                                                             fresh_probes):
    bench = benchmark_script("compile_evaluate")
    out = tmp_path / "result.json"
    # IPC 2: batches of 20, the shape the test above compiled (in one process, the file's order,
    # torch's compiled graph is reused: only the augmented inputs' strides recompile)
    result = bench.main(["--dataset", "Digits", "--seeds", "0", "--ipc", "2", "--nets", "1",
                         "--epochs", "3", "--json", str(out)])
    (row,) = result["sets"]
    assert row["eager_networks_compiled"] == 0 and row["compiled_networks_compiled"] == 1
    assert 0 < row["eager_accuracy"] <= 100 and 0 < row["compiled_accuracy"] <= 100
    assert result["mean_difference"] == row["compiled_accuracy"] - row["eager_accuracy"]
    assert out.is_file()
