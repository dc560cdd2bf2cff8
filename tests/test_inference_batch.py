"""benchmarks/inference_batch.py: seconds per test pass size, and whether the logits keep their
bits whatever the size."""

from __future__ import annotations

import json

import torch


def test_the_sweep_times_each_size_and_compares_the_logits_bit_for_bit(benchmark_script, tmp_path,
                                                                       capsys):
    sweep = benchmark_script("inference_batch")
    out = tmp_path / "sweep.json"
    threads = torch.get_num_threads()
    try:  # one thread, a study worker's: the script sets it for the process
        result = sweep.main(["--archs", "LeNet,ConvNetW32", "--sizes", "7,64", "--images", "200",
                             "--repeats", "2", "--threads", "1", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    rows = result["rows"]
    assert [(r["arch"], r["size"]) for r in rows] == [
        ("LeNet", 7), ("LeNet", 64), ("ConvNetW32", 7), ("ConvNetW32", 64)]
    assert all(r["seconds"] > 0 for r in rows) and all(r["same_bits"] for r in rows)
    assert result["default"] == 32 and json.loads(out.read_text()) == result
    printed = capsys.readouterr().out
    assert "| LeNet | 7 | " in printed and printed.count("| yes |") == 4
