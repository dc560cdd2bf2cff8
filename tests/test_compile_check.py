"""benchmarks/compile_check.py measures gradient agreement and step time (aot_eager: no codegen)."""

import json

import pytest
import torch


@pytest.fixture(scope="module")
def check(benchmark_script):
    return benchmark_script("compile_check")


def test_aot_eager_gradients_are_eager_ones_and_close_to_float64(check):
    row = check.gradient_agreement("ConvNetW32", 2, backend="aot_eager")
    assert row["compiled_eager"] < 1e-7  # the same kernels: only the graph capture differs
    assert 0 < row["eager_f64"] < 1e-5  # fp32 rounding, measured against float64
    assert row["eager_beyond"] == row["compiled_beyond"] == 0


def test_a_wrong_gradient_is_seen(check, monkeypatch):
    real = check.parameter_gradients

    def off_by_a_little(model, x, y):
        grads = real(model, x, y)
        if x.dtype == torch.float32:  # eager and compiled, not the float64 reference
            grads[0] = grads[0] * (1 + 1e-3)
        return grads

    monkeypatch.setattr(check, "parameter_gradients", off_by_a_little)
    row = check.gradient_agreement("MLP", 1, backend="aot_eager")
    assert row["eager_f64"] == pytest.approx(1e-3, rel=0.05)
    assert row["eager_beyond"] == row["compiled_beyond"] == 1


def test_main_times_steps_and_writes_json(check, tmp_path):
    out = tmp_path / "compile.json"
    result = check.main(["--archs", "MLP", "--networks", "1", "--steps", "2", "--layout", "off",
                         "--backend", "aot_eager", "--json", str(out)])
    assert json.loads(out.read_text())["agreement"][0]["arch"] == "MLP"
    speeds = result["speed"]
    assert {(r["precision"], r["compiled"]) for r in speeds} == {
        ("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)}
    assert all(r["ms_per_step"] > 0 for r in speeds)
