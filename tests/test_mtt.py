"""MTT (trajectory matching) on the offline Digits set: its loss, gradients, experts from pools,
resume, determinism, guidance, the learned-lr evaluation and the command line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from ptmdd_helpers.distill import distill, load_resources, make_spec, protocol_for
from ptmdd_helpers.distill.engine import DistillState
from ptmdd_helpers.distill.mtt import mtt_iteration, parameter_layout, student_trajectory, trajectory_loss
from ptmdd_helpers.networks.models import create_model
from ptmdd_helpers.networks.training import TrainRecipe
from ptmdd_helpers.pools.experts import flat_parameters
from ptmdd_helpers.pools.guidance import GuidanceSpec
from ptmdd_helpers.pools.members import MTT_EXPERT_RECIPE, MemberSpec, PoolError, recipe_identity, safe_load
from ptmdd_helpers.pools.pretrain import train_pool
from ptmdd_helpers.specs import spec_id
from ptmdd_helpers.store.evaluations import evaluation_run
from ptmdd_helpers.store.runs import EvaluationSpec, RealSubsetSpec, Workspace, distill_run

# Digits (8×8, ~6 expert steps per epoch) needs fewer student steps and a smaller image lr than
# CIFAR-10's defaults; these are the smoke profile's MTT settings.
FAST = {"model": "ConvNetW32", "syn_steps": 10, "expert_epochs": 2, "max_start_epoch": 4,
        "lr_img": 10.0, "lr_lr": 1e-5, "n_experts": 2}


@pytest.fixture(scope="module")
def pool_root(tmp_path_factory):
    """Two MTT experts of ConvNetW32 on Digits (6 epochs) and one paper-recipe PTM (1 epoch)."""
    root = tmp_path_factory.mktemp("pools")
    train_pool("Digits", ["ConvNetW32"], 2, dataclasses.replace(MTT_EXPERT_RECIPE, epochs=6),
               root=root, device="cpu", progress=False, recipe_name="mtt")
    train_pool("Digits", ["ConvNetW32"], 1, TrainRecipe(epochs=1, momentum=0.9, weight_decay=0.005),
               root=root, device="cpu", progress=False)
    return root


def spec(**changes):
    return make_spec("Digits", "MTT", 1, **{"iterations": 4, **FAST, **changes})


def test_the_loss_is_its_formula_on_hand_made_parameters():
    final, start, target = torch.tensor([1.0, 2.0]), torch.zeros(2), torch.ones(2)
    assert float(trajectory_loss(final, start, target)) == pytest.approx((0 + 1) / (1 + 1))
    assert float(trajectory_loss(target, start, target)) == 0.0


def test_the_loss_is_zero_when_the_target_is_the_students_own_endpoint(digits):
    net = create_model("ConvNetW32", 1, 10, (8, 8))
    names, _ = parameter_layout(net)
    start = flat_parameters(dict(net.named_parameters()), names).detach()
    images, labels = digits.sample_classes(2, torch.Generator().manual_seed(0))
    lr = torch.tensor(0.01)

    def endpoint():
        return student_trajectory(net, start.clone().requires_grad_(True), images, labels, lr,
                                  steps=5, batch=7, order=torch.Generator().manual_seed(1))

    target = endpoint().detach()
    assert not torch.equal(target, start)  # the student moved
    assert float(trajectory_loss(endpoint(), start, target).detach()) == 0.0


def _state(s, data, experts, images=None):
    from ptmdd_helpers.data.augment import DSAConfig
    from ptmdd_helpers.distill import initial_synthetic_set

    initial, labels = initial_synthetic_set(s, data)
    images = (initial if images is None else images).clone().requires_grad_(True)
    lr = torch.tensor(s.trajectory.lr_init, requires_grad=True)
    optimizer = torch.optim.SGD([images, lr], lr=0.0)  # lr 0: gradients only, nothing moves
    return DistillState(s, data, images, labels, optimizer, None, torch.device("cpu"),
                        DSAConfig().without_flip(), learned={"learned_lr": lr}, resources=experts)


def test_one_iteration_matches_its_definition_and_its_gradients_reach_images_and_lr(
        digits, pool_root):
    s = spec()
    experts = load_resources(s, pool_root)
    state = _state(s, digits, experts)
    before = {k: v.clone() for k, v in experts.state(0, 2).items()}
    loss = mtt_iteration(state)
    assert state.images.grad is not None and bool(state.images.grad.abs().sum() > 0)
    assert state.learned["learned_lr"].grad is not None and float(state.learned["learned_lr"].grad) != 0.0
    # the experts' tensors are untouched (nothing in place) and carry no gradient
    for name, tensor in experts.state(0, 2).items():
        assert torch.equal(tensor, before[name]) and tensor.grad is None
    # the same loss by hand, from the same streams: expert, start epoch, augmentation, order
    draw = state.generator("expert")
    expert = int(torch.randint(2, (), generator=draw))
    t = int(torch.randint(4, (), generator=draw))
    names, _ = parameter_layout(state.cache["student"])
    start, target = experts.flat(expert, t, names), experts.flat(expert, t + 2, names)
    from ptmdd_helpers.data.augment import augment_per_sample

    augment_generator = state.generator("augment")
    final = student_trajectory(
        state.cache["student"], start.clone().requires_grad_(True), state.images, state.labels,
        state.learned["learned_lr"], 10, 0, state.generator("inner order"),
        lambda x: augment_per_sample(x, state.dsa, augment_generator))
    assert float(loss) == pytest.approx(float(trajectory_loss(final, start, target)), rel=1e-6)


def test_experts_are_pool_members_in_the_pools_layout(pool_root):
    paper = MemberSpec("Digits", "ConvNetW32", 0).directory(pool_root)
    expert = MemberSpec("Digits", "ConvNetW32", 0, recipe_name="mtt").directory(pool_root)
    assert expert == pool_root / "Digits" / "ConvNetW32" / "mtt" / "seed0"
    for folder in (paper, expert):  # the same files, the same checkpoint format
        assert {"log.json", "recipe.json", "resume.pt", "epoch_1.pt"} <= {
            p.name for p in folder.iterdir()}
    a, b = safe_load(paper / "epoch_1.pt"), safe_load(expert / "epoch_1.pt")
    assert set(a) == set(b) == {"state_dict", "meta"}
    assert set(a["state_dict"]) == set(b["state_dict"])
    assert sorted(p.name for p in expert.glob("epoch_*.pt")) == [f"epoch_{e}.pt" for e in range(1, 7)]


def test_the_same_spec_gives_identical_tensors_and_another_seed_does_not(digits, pool_root):
    a = distill(spec(), digits, progress=False, pool_root=pool_root)
    b = distill(spec(), digits, progress=False, pool_root=pool_root)
    assert torch.equal(a["images"], b["images"]) and a["history"] == b["history"]
    assert a["learned"]["learned_lr"] == b["learned"]["learned_lr"] != spec().trajectory.lr_init
    c = distill(spec(seed=1), digits, progress=False, pool_root=pool_root)
    assert not torch.equal(a["images"], c["images"])


def test_clom_with_alpha_zero_equals_mtt(digits, pool_root):
    plain = distill(spec(), digits, progress=False, pool_root=pool_root)
    guidance = GuidanceSpec("clom", "Digits", ("ConvNetW32",), 1, 1, (0.0,),
                            pool_recipe=recipe_identity(TrainRecipe(epochs=1, momentum=0.9,
                                                                    weight_decay=0.005)))
    from ptmdd_helpers.pools.guidance import Guidance

    guided_spec = spec(guidance=guidance)
    assert spec_id(guided_spec) != spec_id(spec())
    guided = distill(guided_spec, digits, progress=False, pool_root=pool_root,
                     guidance=Guidance(guidance, digits, pool_root=pool_root))
    assert torch.equal(plain["images"], guided["images"])
    assert plain["history"] == guided["history"] and torch.equal(plain["learned"]["learned_lr"],
                                                           guided["learned"]["learned_lr"])


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, pool_root, interrupt_once):
    s = spec(iterations=6)
    straight = distill_run(s, Workspace(tmp_path / "a", pool_root=pool_root, progress=False,
                                        checkpoint_every=2, device="cpu"))
    seen = interrupt_once("MTT")
    workspace = Workspace(tmp_path / "b", pool_root=pool_root, progress=False,
                          checkpoint_every=2, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        distill_run(s, workspace)
    resumed = distill_run(s, workspace)
    assert seen == [0, 1, 2, 3, 4, 5, 4, 5]  # resumed from the checkpoint after iteration 4
    for key in ("images", "learned_lr"):
        assert torch.equal(straight.tensors()[key], resumed.tensors()[key])
    assert straight.metrics["loss_history"] == resumed.metrics["loss_history"]


def test_a_snapshot_holds_the_learned_lr_of_the_run_of_k_iterations(tmp_path, pool_root):
    recorded = Workspace(tmp_path / "a", pool_root=pool_root, progress=False, device="cpu",
                         snapshots=(2,))
    distill_run(spec(iterations=5), recorded)
    alone = distill_run(spec(iterations=2), Workspace(tmp_path / "b", pool_root=pool_root,
                                                      progress=False, device="cpu"))
    snapshot = recorded.store.get(spec(iterations=2))
    assert snapshot.id == alone.id
    for key in ("images", "labels", "learned_lr"):
        assert torch.equal(snapshot.tensors()[key], alone.tensors()[key]), key
    assert snapshot.metrics["learned_lr"] == alone.metrics["learned_lr"]


def test_a_short_run_beats_its_own_initialization_paired_by_seed(tmp_path, pool_root):
    """Each seed's MTT set against the set it started from (the same spec at 0 iterations, whose
    learned lr is its start), both evaluated by MTT's protocol (the learned lr) on the same
    networks (the evaluation streams follow the seed)."""
    workspace = Workspace(tmp_path, pool_root=pool_root, progress=False, device="cpu")
    protocol = protocol_for("MTT", epochs=100)
    assert protocol.learned_lr
    gains = []
    for seed in range(3):
        accuracy = {}
        for iterations in (0, 20):
            subject = spec(seed=seed, iterations=iterations)
            run = evaluation_run(EvaluationSpec(subject, "ConvNetW32", 3, protocol), workspace)
            accuracy[iterations] = run.metrics["summary"]["mean"]
            assert run.metrics["lr"] == pytest.approx(
                float(distill_run(subject, workspace).tensors()["learned_lr"]))
        gains.append(accuracy[20] - accuracy[0])
    assert all(gain > 0 for gain in gains), gains


def test_the_learned_lr_protocol_refuses_a_set_that_learned_none(tmp_path):
    evaluation = EvaluationSpec(RealSubsetSpec("Digits", 1), "ConvNetW32", 1, protocol_for("MTT"))
    with pytest.raises(ValueError, match=r"learned none: only methods that learn a learning rate"):
        evaluation_run(evaluation, Workspace(tmp_path, progress=False, device="cpu"))
    assert not any((tmp_path).glob("evaluation-*"))


def test_experts_of_another_recipe_are_refused(pool_root):
    other = dataclasses.replace(spec().trajectory, pool_recipe="0123456789abcdef")
    with pytest.raises(PoolError, match="refusing to mix them"):
        load_resources(dataclasses.replace(spec(), trajectory=other), pool_root)


def test_the_command_line_distills_mtt_and_names_the_pretrain_command_for_missing_experts(
        tmp_path, pool_root, capsys):
    from ptmdd_helpers.cli.commands import main

    # the refusals in this process (main's return code and stderr, as the command's), the run
    # through the module's entry point in a process of its own
    base = [sys.executable, "-m", "ptmdd_helpers.cli.commands", "distill", "--dataset", "Digits",
            "--method", "MTT", "--ipc", "1", "--model", "ConvNetW32", "--iterations", "2",
            "--syn-steps", "3", "--max-start-epoch", "2", "--lr-img", "10", "--quiet",
            "--device", "cpu", "--store", str(tmp_path / "store")]
    capsys.readouterr()
    assert main([*base[3:], "--pool-root", str(tmp_path / "empty"), "--no-eval"]) == 2
    missing = capsys.readouterr().err
    assert "Traceback" not in missing
    assert ("ptmdd pretrain --source Digits --arch ConvNetW32 --num 1 --epochs 3 --recipe mtt "
            f"--pool-root {tmp_path / 'empty'}") in missing.replace("\n", " ")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").glob("distill-*"))
    ok = subprocess.run([*base, "--pool-root", str(pool_root), "--eval-nets", "1",
                         "--eval-epochs", "2"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "learned lr" in ok.stdout and "augment dsa" in ok.stdout
    from ptmdd_helpers.store.export import exported_set
    from ptmdd_helpers.store.runstore import RunStore

    (run,) = RunStore(tmp_path / "store").runs("distill")
    assert exported_set(run)["learned_lr"] == pytest.approx(run.metrics["learned_lr"])

    assert main([*base[3:], "--pool-root", str(pool_root), "--pool", "ConvNet", "--no-eval"]) == 2
    capsys.readouterr()
    assert main([*base[3:-4], "--method", "DM", "--syn-steps", "3"]) == 2
    assert "configure MTT's own settings" in capsys.readouterr().err


def test_mtt_is_a_method_of_the_study_and_the_dry_run_counts_its_experts(tmp_path):
    import io

    from ptmdd_helpers import study

    roots = [f"store={tmp_path / 'store'}", f"pool_root={tmp_path / 'pools'}"]
    params = study.load_profile("smoke", [*roots, "06_cross_architecture.methods=[MTT]"])
    for notebook in ("00_preliminary", "06_cross_architecture"):
        grid = study.build_grid(notebook, params[notebook])
        mtt = [d for d in grid.distillations if d.method == "MTT"]
        assert mtt and all(d.trajectory.n_experts == 2 for d in mtt)
        experts = [m for m in grid.members if m.recipe_name == "mtt"]
        assert [(m.seed, m.recipe.epochs, m.recipe.momentum) for m in experts] == \
            [(0, 6, 0.0), (1, 6, 0.0)]
        protocols = {i.spec.protocol.learned_lr for i in grid.items
                     if getattr(i.spec.subject, "method", None) == "MTT"}
        assert protocols == {True}
    sizes = study.dry_run("smoke", roots, only=["00_preliminary"], file=io.StringIO())
    assert sizes[0].experts == (0, 2) and sizes[0].members == (0, 1)


def test_a_profile_whose_experts_are_too_short_is_refused():
    from ptmdd_helpers import study

    params = study.load_profile("smoke", ["experts.recipe.epochs=3"])
    with pytest.raises(study.StudyError, match="raise it to at least 5"):
        study.build_grid("00_preliminary", params["00_preliminary"])
