"""The allocator tuning: freed activations are reused instead of re-faulted from the OS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, resource, torch
import ptmdd_helpers
from ptmdd_helpers import malloc
imported = malloc._applied  # None: importing the package tuned nothing
from ptmdd_helpers.malloc import tune_malloc
active = tune_malloc()
def churn():
    for _ in range(20):
        x = torch.ones(16, 2**20)  # 64 MiB, allocated and freed each time
        del x
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"imported": imported, "active": active, "faults": faults}))
"""


def _probe(setting: str) -> dict:
    env = dict(os.environ, PTMDD_MALLOC_TUNING=setting, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_tuned_allocator_reuses_freed_tensors_without_page_faults():
    tuned, default = _probe("1"), _probe("0")
    assert tuned["active"] and not default["active"]
    assert tuned["imported"] is None and default["imported"] is None  # import changes nothing
    # 20 × 64 MiB touched: 4 KiB pages would fault ~330 000 times if every block came fresh from mmap
    assert default["faults"] > 100_000
    assert tuned["faults"] < default["faults"] / 20
