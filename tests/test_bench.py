"""benchmarks/bench.py runs, counts the FLOPs a ConvNet really does, logs and replays its
convolutions, and writes its JSON."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ptmdd_helpers.networks.models import create_model


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("bench")


def test_dm_row_counts_convnet_flops_and_writes_json(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--only", "dm10", "--threads", "1", "--json", str(out),
                         "--no-bf16-bound", "--small-peak"])
    rows = {row["row"]: row for row in result["rows"]}
    dm = rows["DM IPC 10"]
    # ConvNet (128 channels, 1×28×28 padded to 32×32) forward: 2·(1·9·128·32² + 128·9·128·16²
    # + 128·9·128·8²) FLOPs per image, for 2560 real and 100 synthetic images, plus the synthetic
    # images' backward (input gradients only, the network is frozen: one forward's worth)
    per_image = 2 * (9 * 128 * 32**2 + 128 * 9 * 128 * 16**2 + 128 * 9 * 128 * 8**2)
    expected = (2560 + 100 + 100) * per_image
    assert dm["gflop"] * 1e9 == pytest.approx(expected, rel=0.01)
    assert dm["path"] == "batched" and dm["seconds"] > 0
    assert dm["fraction_of_peak"] == pytest.approx(dm["gflops"] / result["peak_gflops"])
    assert result["peak_gflops"] == max(r["gflops"] for r in result["rows"]
                                        if "peak" in r["row"] and r["precision"] == "fp32")
    # --no-bf16-bound: neither the bf16 peak nor the rows' bf16 bound was measured
    assert result["peak_gflops_bf16"] is None and dm["conv_seconds_bf16"] is None
    assert not [r for r in result["rows"] if r["precision"] == "bf16"]
    assert dm["of_bound"] == pytest.approx(dm["seconds"] / dm["conv_seconds"])
    assert json.loads(out.read_text())["rows"][-1]["row"] == "DM IPC 10"
    assert "| DM IPC 10 | batched | fp32 |" in capsys.readouterr().out


def test_unknown_rows_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--only", "dc1,nope"])


def test_convolution_log_holds_a_convnet_steps_convolutions_and_replays_them(bench):
    net = create_model("ConvNet", 1, 10, (28, 28))
    images = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with bench.ConvolutionLog() as log:
        F.cross_entropy(net(images), torch.arange(8) % 10).backward()
    calls = sorted((func.__name__, described[0][1], described[-1] if "backward" in func.__name__
                    else None, count) for (func, described), count in log.calls.items())
    # three layers: a forward each, a backward each; the first layer's backward computes no
    # gradient for the images (they need none)
    assert calls == [
        ("convolution.default", (8, 1, 28, 28), None, 1),
        ("convolution.default", (8, 128, 8, 8), None, 1),
        ("convolution.default", (8, 128, 16, 16), None, 1),
        ("convolution_backward.default", (8, 128, 8, 8), (True, True, True), 1),
        ("convolution_backward.default", (8, 128, 16, 16), (True, True, True), 1),
        ("convolution_backward.default", (8, 128, 32, 32), (False, True, True), 1),
    ]
    recorded = next(d[0] for (f, d), _ in log.calls.items() if d[0][1] == (8, 1, 28, 28))
    replayed = bench._materialize(recorded, None)
    assert replayed.shape == images.shape and replayed.stride() == images.stride()
    assert bench._materialize(recorded, torch.bfloat16).dtype == torch.bfloat16
    cpu = torch.device("cpu")
    assert bench.convolution_seconds(log, cpu) > 0
    assert bench.convolution_seconds(log, cpu, torch.bfloat16) > 0


@pytest.fixture
def mtt_at_20_steps(bench, monkeypatch):
    """The cpu profile's MTT settings with N 20 student steps: a row's cost is N times one step's
    work, and the profile's N 80 would make the two rows below 4× as long."""
    settings = {**bench.cpu_profile_mtt(), "syn_steps": 20}
    monkeypatch.setattr(bench, "cpu_profile_mtt", lambda: settings)
    return settings


def test_the_mtt_row_takes_the_cpu_profiles_trajectory_settings(bench):
    assert bench.cpu_profile_mtt() == {"syn_steps": 80, "n_experts": 2, "expert_epochs": 2,
                                       "max_start_epoch": 2}


def test_mtt_row_times_one_iteration_at_the_cpu_profiles_settings(bench, mtt_at_20_steps):
    result = bench.main(["--quick", "--only", "mtt1", "--threads", "1", "--no-bf16-bound",
                         "--small-peak"])
    row = next(r for r in result["rows"] if r["row"] == "MTT IPC 1 (cpu profile)")
    assert row["images"] == 20 * 10 and row["note"] == "N = 20, batch 10"  # N steps on 10 images
    assert row["gflop"] > 0 and row["conv_seconds"] > 0 and row["seconds"] > 0


def test_bf16_rows_distill_in_bf16_and_compare_with_the_bf16_peak(bench, mtt_at_20_steps):
    """The smallest distillation row (mtt1: ConvNetW32 on 10 images): bf16 emulated on a CPU
    without native bfloat16 makes DM IPC 10 take minutes."""
    result = bench.main(["--quick", "--only", "mtt1", "--threads", "1", "--precision", "bf16",
                         "--small-peak"])
    row = next(r for r in result["rows"] if r["row"] == "MTT IPC 1 (cpu profile)")
    assert row["precision"] == "bf16"
    assert row["fraction_of_peak"] == pytest.approx(row["gflops"] / result["peak_gflops_bf16"])
    # its convolutions ran in bf16: replayed in their own dtype they cost what bf16 ones cost
    assert row["conv_seconds"] == pytest.approx(row["conv_seconds_bf16"], rel=0.5)
