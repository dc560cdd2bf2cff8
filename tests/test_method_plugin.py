"""A method is one module: a toy method registered here, in this file only, is distilled and
evaluated through ``ptmdd distill`` and a tiny study, with its own setting on the command line and
in a profile, its own evaluation protocol, and the engine's guidance, checkpoints and NaN stop."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
import yaml

from ptmdd_helpers import study
from ptmdd_helpers.cli.commands import main
from ptmdd_helpers.distill import (
    Method,
    get_method,
    list_methods,
    make_spec,
    protocol_for,
    register_method,
    unregister_method,
)
from ptmdd_helpers.distill.methods import HELP
from ptmdd_helpers.store.runstore import RunStore


@dataclass(frozen=True)
class ToyOptions:
    """The toy method's own setting: how strongly the class means are pulled."""

    weight: float = field(default=1.0, metadata={HELP: "the weight of the pixel-mean loss"})


def toy_iteration(state):
    """Pull each class's synthetic pixel mean towards a real batch's (one image update)."""
    reals, syns = state.class_batches(state.generator("real"), state.generator("augment"))
    loss = torch.zeros((), device=state.device)
    if state.matches:
        for real, syn in zip(reals, syns, strict=True):
            loss = loss + state.spec.options.weight * ((real.mean(0) - syn.mean(0)) ** 2).sum()
    return state.step(loss)


TOY = Method("TOY", toy_iteration, iterations=4, lr_img=0.05, init="noise", eval_epochs=2,
             eval_augment="none", options=ToyOptions, description="a toy: pixel means")


@pytest.fixture
def toy():
    """TOY registered for one test."""
    register_method(TOY)
    yield TOY
    unregister_method("TOY")


def _roots(tmp_path) -> list[str]:
    return ["--store", str(tmp_path / "store"), "--pool-root", str(tmp_path / "pools")]


def test_a_registered_method_is_in_the_vocabulary_with_its_defaults(toy):
    assert list_methods()[-1] == "TOY" and get_method("toy") is toy
    spec = make_spec("Digits", "TOY", 1, weight=2)
    assert (spec.iterations, spec.lr_img, spec.init, spec.options) == (4, 0.05, "noise",
                                                                       ToyOptions(2.0))
    assert not spec.uses_dsa
    assert (protocol_for("TOY").epochs, protocol_for("TOY").augment) == (2, "none")
    with pytest.raises(ValueError, match="unknown argument.*syn_steps"):
        make_spec("Digits", "TOY", 1, syn_steps=3)  # MTT's settings are not TOY's


def test_ptmdd_distill_runs_the_toy_method_with_its_own_option(toy, tmp_path, capsys):
    argv = ["distill", "--dataset", "Digits", "--method", "toy", "--ipc", "1", "--model",
            "ConvNetW32", "--batch-real", "16", "--weight", "3", "--eval-nets", "1",
            "--quiet", "--device", "cpu", *_roots(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "distillation distill-" in out and "4 iterations" in out
    assert "(2 epochs, augment none)" in out  # TOY's own evaluation protocol
    run = next(r for r in RunStore(tmp_path / "store").runs("distill"))
    assert run.spec["options"] == {"__kind__": "ToyOptions", "weight": 3.0}
    initial = make_spec("Digits", "TOY", 1)
    from ptmdd_helpers.data.datasets import load_dataset
    from ptmdd_helpers.distill import initial_synthetic_set

    start, _ = initial_synthetic_set(initial, load_dataset("Digits"))
    images = run.tensors()["images"]
    assert images.shape == start.shape and not torch.equal(images, start)
    # the loss fell: pixel means moved towards the real ones
    assert run.metrics["loss_history"][-1] < run.metrics["loss_history"][0]
    # the same command again computes nothing and prints the same run
    assert main(argv) == 0
    assert len(list(RunStore(tmp_path / "store").runs("distill"))) == 1


def test_the_toy_option_with_another_method_is_refused(toy, tmp_path, capsys):
    code = main(["distill", "--dataset", "Digits", "--method", "DM", "--ipc", "1",
                 "--weight", "3", "--no-eval", *_roots(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--weight configure TOY's own settings, but --method is DM" in err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_the_engine_stops_the_toy_method_when_it_diverges(toy, digits):
    from ptmdd_helpers.distill import DistillationDiverged, distill

    spec = make_spec("Digits", "TOY", 1, model="ConvNetW32", batch_real=16, lr_img=1e38,
                     weight=1e38, iterations=3)
    with pytest.raises(DistillationDiverged, match="TOY loss became"):
        distill(spec, digits, progress=False)


def test_a_tiny_study_distils_and_evaluates_the_toy_method(toy, tmp_path):
    profile = {
        "shared": {
            "target": "Digits", "device": "cpu", "executor": "local", "workers": 1,
            "seeds": [0, 1], "ipcs": [1], "alpha": {"TOY": 5},
            "distill": {"model": "ConvNetW32", "batch_real": 16, "TOY": {"iterations": 3,
                                                                       "weight": 2.0}},
            "pool": {"arch": "ConvNetW32", "n_models": 1, "epoch": "final",
                     "recipe": {"epochs": 1}},
            "eval": {"n_nets": 1, "TOY": {"epochs": 3}},
        },
        "00_preliminary": {"methods": ["toy"], "references": {"random_real": False}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(profile))
    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}"]
    params = study.load_profile(path, roots)["00_preliminary"]
    grid = study.build_grid("00_preliminary", params)
    assert {s.method for s in grid.distillations} == {"TOY"}
    assert {s.options for s in grid.distillations} == {ToyOptions(2.0)}
    frame = study.run(grid, verbose=False)
    assert len(frame) == 4  # 2 seeds × (baseline, +CLoM), one network each
    assert set(frame["condition"]) == {"baseline", "+CLoM"}
    assert set(frame["protocol.epochs"]) == {3}
    assert frame["accuracy"].between(0, 1).all()
    # the engine added the PTM loss: the guided set of a seed differs from its baseline
    store = RunStore(tmp_path / "store")
    sets = {spec.guidance is None: store.get(spec).tensors()["images"]
            for spec in grid.distillations if spec.seed == 0}
    assert not torch.equal(sets[True], sets[False])
    # the per-method key in the wrong case, or for a method not registered, names the key
    for bad in ("alpha={toy: 5}", "distill.Toy={iterations: 2}"):
        with pytest.raises(study.StudyError, match="toy|Toy"):
            study.load_profile(path, [*roots, bad])


PLUGIN_MODULE = '''
"""A user's method module: it registers PIX (pixel-mean matching) when imported."""
import torch

from ptmdd_helpers.distill import Method, register_method


def pix_iteration(state):
    reals, syns = state.class_batches(state.generator("real"), state.generator("augment"))
    loss = torch.zeros((), device=state.device)
    if state.matches:
        for real, syn in zip(reals, syns, strict=True):
            loss = loss + ((real.mean(0) - syn.mean(0)) ** 2).sum()
    return state.step(loss)


register_method(Method("PIX", pix_iteration, iterations=3, lr_img=0.05, eval_epochs=2,
                       eval_augment="none"))
'''


def test_study_workers_import_the_modules_of_plug_in_methods(tmp_path, monkeypatch):
    """A method registered at import of a user's module runs in a study with 2 worker processes:
    each worker imports the module (``method_modules``) before its tasks."""
    import importlib
    import sys

    (tmp_path / "pix_method.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    importlib.import_module("pix_method")
    try:
        from ptmdd_helpers.distill.methods import method_modules

        assert method_modules() == ["pix_method"]
        profile = {
            "shared": {"target": "Digits", "device": "cpu", "executor": "local", "workers": 2,
                       "seeds": [0, 1], "ipcs": [1], "alpha": 5,
                       "distill": {"model": "ConvNetW32", "batch_real": 16},
                       "pool": {"arch": "ConvNetW32", "n_models": 1, "recipe": {"epochs": 1}},
                       "eval": {"n_nets": 1}},
            "00_preliminary": {"methods": ["PIX"], "references": {"random_real": False}},
        }
        path = tmp_path / "pix.yaml"
        path.write_text(yaml.safe_dump(profile))
        roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}"]
        result = study.run_study(path, only="00", overrides=roots, notebooks=False, verbose=False)
        assert {status for status, _ in result["results"].values()} == {"computed"}
        runs = RunStore(tmp_path / "store").runs("distill")
        assert len(runs) == 4 and {r.spec["method"] for r in runs} == {"PIX"}
    finally:
        unregister_method("PIX")
        sys.modules.pop("pix_method", None)
