"""benchmarks/profile_rows.py attributes a call's CPU time to its operations and its convolutions."""


import pytest
import torch


@pytest.fixture(scope="module")
def rows(benchmark_script):
    return benchmark_script("profile_rows")


def test_convolution_names(rows):
    assert rows.is_convolution("aten::mkldnn_convolution")
    assert rows.is_convolution("aten::convolution_backward")
    assert not rows.is_convolution("aten::avg_pool2d")
    assert not rows.is_convolution("aten::native_group_norm")


def test_a_convolution_heavy_call_is_mostly_convolution(rows):
    x = torch.randn(32, 64, 16, 16, requires_grad=True)
    w = torch.randn(64, 64, 3, 3, requires_grad=True)

    def call():
        torch.relu(torch.conv2d(x, w, padding=1)).sum().backward()

    heavy = rows.top_operations(call, 5)
    assert 0.5 < heavy["convolution_share"] <= 1.0  # 64-channel 3x3 convs dwarf one ReLU
    shares = [r["share"] for r in heavy["top"]]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 1.0 + 1e-9
    assert len(heavy["top"]) == 5


def test_an_elementwise_call_has_no_convolution(rows):
    x = torch.randn(256, 1024)
    light = rows.top_operations(lambda: torch.relu(x * 2 + 1), 3)
    assert light["convolution_share"] == 0.0
    assert rows.markdown("light", light).count("\n| ") == len(light["top"]) + 1  # header + rows
