"""Shared fixtures: the offline copy of MNIST/FashionMNIST beside the repo, isolated caches, the
Digits dataset, and a counter of the host's reads of tensor values."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import weakref
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from ptmdd_helpers.data.datasets import LoadedDataset, load_dataset
from ptmdd_helpers.distill import get_method

REPO = Path(__file__).resolve().parents[1]
# Evaluation trains eagerly in the suite (compiling costs 8-20 s per process and shape, here and in
# the subprocesses the tests start); tests/test_compiling.py asks for compilation explicitly.
os.environ.setdefault("PTMDD_COMPILE", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two test processes on two cores: each gets one thread (and so do the
    # processes it starts), since two processes spin-waiting on two threads each slow each other
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
SHARED_DATA = Path(os.environ.get("PTMDD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def benchmark_script():
    """A loader of ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    folder = REPO / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only offline data folder; the test is skipped, saying why, when it is absent."""
    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"offline FashionMNIST not found at {SHARED_DATA} (set PTMDD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits() -> LoadedDataset:
    """The offline Digits dataset (scikit-learn's), shared by the tests that train on it."""
    return load_dataset("Digits")


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path_factory, monkeypatch):
    """Keep caches, pools and runs of the tests out of the user's folders."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("PTMDD_CACHE", str(base / "cache"))
    monkeypatch.setenv("PTMDD_POOLS", str(base / "pools-default"))
    monkeypatch.setenv("PTMDD_RUNS", str(base / "runs-default"))


class HostReads(TorchFunctionMode):
    """Counts the host's reads of tensor values (``float(t)``, ``t.item()``, ``t.tolist()``, …).

    On a GPU each such read waits for the device. Reads of a random draw's own result (the
    augmentation's choice of transform, the guidance's choice of a pool member: CPU generators,
    never on the device) are not counted.
    """

    READS = frozenset({"__float__", "__int__", "__bool__", "__index__", "__format__", "item",
                       "tolist", "numpy"})
    DRAWS = frozenset({"randint", "randperm", "rand", "randn", "multinomial", "bernoulli"})

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self._draws: weakref.WeakSet = weakref.WeakSet()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.READS and args and args[0] not in self._draws:
            self.reads.append(name)
        result = func(*args, **(kwargs or {}))
        if name in self.DRAWS and isinstance(result, torch.Tensor):
            self._draws.add(result)
        return result


def compute_run(store, spec, compute, *, device: str = "cpu", recompute: bool = False):
    """``spec``'s run from ``store``, computed by ``compute(ctx) -> metrics`` under
    :meth:`RunStore.computing` (the path distill_run and evaluation_run take) if not stored."""
    with store.computing(spec, device=device, recompute=recompute) as job:
        if job.run is None:
            job.complete(compute(job.context))
    return job.run


def replace_iteration(monkeypatch, method: str, iteration) -> None:
    """Register ``method`` with another iteration function for one test (the registry's entry)."""
    from ptmdd_helpers.distill.methods import REGISTRY

    monkeypatch.setitem(REGISTRY, method, dataclasses.replace(get_method(method),
                                                              iteration=iteration))


@pytest.fixture
def interrupt_once(monkeypatch):
    """``interrupt_once(method)`` makes that method's iteration 5 raise KeyboardInterrupt once;
    returns the list of iterations run (an interrupted run then resumed from its checkpoint after
    iteration 4 reads ``[0, 1, 2, 3, 4, 5, 4, 5]``)."""
    def install(method: str) -> list[int]:
        real_iteration, seen = get_method(method).iteration, []

        def killed_at_five(state):
            seen.append(state.iteration)
            if state.iteration == 5 and len(seen) < 7:
                raise KeyboardInterrupt
            return real_iteration(state)

        replace_iteration(monkeypatch, method, killed_at_five)
        return seen

    return install


@pytest.fixture
def host_reads():
    """A fresh :class:`HostReads` mode: ``with host_reads as reads: ...; len(reads.reads)``."""
    return HostReads()
