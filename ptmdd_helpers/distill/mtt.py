"""MTT (matching training trajectories, Cazenavette et al., CVPR 2022): one iteration.

Per iteration an expert k and a start epoch t ∈ [0, T+) are drawn (stream ``"expert"``); θ_t and
θ_{t+M} are that expert's checkpoints (:class:`~ptmdd_helpers.pools.experts.Experts`). From θ_t the
student takes N SGD steps on mini-batches of the synthetic set (``batch_syn`` images, a fresh
permutation whenever one is used up, stream ``"inner order"``; per-image DSA in MTT's way, stream
``"augment"``), with the learned learning rate η: θ_{n+1} = θ_n − η ∇ CE(f(x_n; θ_n), y_n),
differentiably (``torch.func.functional_call`` on flattened parameters; nothing is updated in
place, so the experts' tensors are never touched). The loss is
‖θ_N − θ_{t+M}‖² / ‖θ_t − θ_{t+M}‖²; it updates the images (SGD, ``lr_img``, momentum 0.5) and η
(SGD, ``lr_lr``, momentum 0.5). CLoM / CCLoM add α · L_PTM once per iteration, as in DM.
Defaults and their sources: docs/method.md#mtt-trajectory-matching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..checks import check_int, check_number
from ..data.augment import augment_per_sample
from ..networks.training import autocast, full_precision
from ..pools.members import MTT_EXPERT_RECIPE, NAMED_RECIPES, MemberSpec, recipe_identity
from .engine import DistillState
from .methods import FLAG, HELP, Method, register_method
from .spec import nearest_ipc

# MTT's hyper-parameters by IPC: CIFAR-10 without ZCA whitening (which ptmdd does not implement),
# from the MTT paper's table (docs/method.md#mtt-trajectory-matching): (syn_steps N, expert_epochs
# M, max_start_epoch T+, lr_img, lr_lr). Other datasets and IPCs use the row of the nearest IPC.
MTT_BY_IPC = {1: (50, 2, 5, 1000.0, 1e-7), 10: (30, 2, 15, 1000.0, 1e-5), 50: (30, 2, 40, 1000.0, 1e-5)}


def _option(default: object, help_text: str, flag: str | None = None):
    """A field of MTT's settings with its command-line help (and flag where it differs; "": none)."""
    meta = {HELP: help_text, **({FLAG: flag} if flag is not None else {})}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrajectorySpec:
    """MTT: which expert trajectories are matched, and how.

    The experts are members 0 … ``n_experts``−1 of the distillation's ``model`` trained on its
    ``dataset`` with the named pool recipe ``recipe`` (its folder, ``ptmdd pretrain --recipe``);
    ``pool_recipe`` is that recipe's identity (:func:`~ptmdd_helpers.pools.pool.recipe_identity`), so
    experts trained otherwise give other run ids. Per iteration an expert and a start epoch
    t ∈ [0, ``max_start_epoch``) are drawn; the student takes ``syn_steps`` SGD steps from θ_t on
    ``batch_syn`` synthetic images each (0: all of them) with a learned learning rate (starting at
    ``lr_init``, updated by SGD at ``lr_lr``) and is compared with θ_{t+``expert_epochs``}.
    """

    n_experts: int = _option(1, "expert trajectories matched: members 0..N-1 of --model on "
                                "--dataset (default: every expert found under the pool root)",
                             "--experts")
    syn_steps: int = _option(50, "student steps N (default by IPC)")
    expert_epochs: int = _option(2, "expert epochs M matched (default by IPC)")
    max_start_epoch: int = _option(5, "start epochs drawn from 0..T+-1 (default by IPC)")
    lr_lr: float = _option(1e-7, "learning rate of the learned student lr (default by IPC)")
    lr_init: float = _option(MTT_EXPERT_RECIPE.lr, "the student lr's start (default: the experts' "
                                                   "lr, 0.01)")
    batch_syn: int = _option(0, "synthetic images per student step (default 0: all)")
    recipe: str = _option("mtt", "the named pool recipe of the experts", flag="")
    pool_recipe: str = _option(recipe_identity(MTT_EXPERT_RECIPE),
                               "the identity of the experts' recipe (read from disk)", flag="")

    @property
    def needed_epochs(self) -> int:
        """The last expert epoch an iteration can read: T+ − 1 + M."""
        return self.max_start_epoch - 1 + self.expert_epochs


def mtt_defaults(ipc: int) -> tuple[dict, dict]:
    """MTT's (spec, trajectory) defaults for ``ipc``: the row of the nearest IPC in ``MTT_BY_IPC``."""
    steps, epochs, start, lr_img, lr_lr = MTT_BY_IPC[nearest_ipc(MTT_BY_IPC, ipc)]
    return ({"lr_img": lr_img},
            {"syn_steps": steps, "expert_epochs": epochs, "max_start_epoch": start, "lr_lr": lr_lr})


def check_trajectory(trajectory: TrajectorySpec, where: str) -> None:
    """Raise ``ValueError`` for a field of ``trajectory`` of the wrong type or out of range."""
    for name in ("n_experts", "syn_steps", "expert_epochs", "max_start_epoch"):
        check_int(getattr(trajectory, name), f"{where}: trajectory {name} (--{name.replace('_', '-')})",
                  minimum=1)
    check_int(trajectory.batch_syn, f"{where}: trajectory batch_syn (--batch-syn)", minimum=0,
              fix="0 uses the whole synthetic set in every student step")
    check_number(trajectory.lr_lr, f"{where}: trajectory lr_lr (--lr-lr)", positive=True)
    check_number(trajectory.lr_init, f"{where}: trajectory lr_init (--lr-init)", positive=True)
    if trajectory.recipe not in NAMED_RECIPES:
        raise ValueError(f"{where}: trajectory recipe must be a named pool recipe "
                         f"({', '.join(NAMED_RECIPES)}), got {trajectory.recipe!r}")
    if not isinstance(trajectory.pool_recipe, str) or not trajectory.pool_recipe:
        raise ValueError(f"{where}: trajectory pool_recipe must be a pool identity string "
                         f"(pools.members.recipe_identity), got {trajectory.pool_recipe!r}")


def parameter_layout(net: nn.Module) -> tuple[list[str], list[torch.Size]]:
    """The names and shapes of ``net``'s parameters, in the order θ is flattened."""
    named = list(net.named_parameters())
    return [name for name, _ in named], [p.shape for _, p in named]


def unflatten(flat: torch.Tensor, names: list[str], shapes: list[torch.Size]) -> dict:
    """θ as ``{name: tensor}`` views of ``flat`` (gradients flow back to ``flat``)."""
    parts = torch.split(flat, [s.numel() for s in shapes])
    return {name: part.view(shape) for name, part, shape in zip(names, parts, shapes, strict=True)}


def student_trajectory(
    net: nn.Module, start: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
    lr: torch.Tensor, steps: int, batch: int, order: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """θ_N: ``steps`` differentiable SGD steps from ``start`` (flat, requires grad) on the set;
    the forward passes in ``precision`` (bf16: under autocast; augmentation and loss in fp32)."""
    names, shapes = parameter_layout(net)
    batch = batch or len(images)
    params, queue = start, []
    for _ in range(steps):
        if not queue:
            queue = list(torch.randperm(len(images), generator=order).to(images.device).split(batch))
        chosen = queue.pop(0)
        x = images[chosen]
        if augment is not None:
            x = augment(x)
        with autocast(images.device, precision):
            logits = full_precision(functional_call(net, unflatten(params, names, shapes), (x,)))
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels[chosen]), params,
                                      create_graph=True)
        params = params - lr * grad
    return params


def trajectory_loss(final: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖θ_N − θ_{t+M}‖² / ‖θ_t − θ_{t+M}‖² (flattened parameters)."""
    return ((final - target) ** 2).sum() / ((start - target) ** 2).sum()


def mtt_iteration(state: DistillState) -> torch.Tensor:
    """One MTT iteration; returns the loss, a tensor on the device (not read here)."""
    spec, trajectory = state.spec, state.spec.trajectory
    if "student" not in state.cache:
        state.cache["student"] = state.fresh_network().train()  # its own weights are never used
    net = state.cache["student"]
    experts = state.resources
    draw = state.generator("expert")
    expert = int(torch.randint(trajectory.n_experts, (), generator=draw))
    start_epoch = int(torch.randint(trajectory.max_start_epoch, (), generator=draw))
    loss = torch.zeros((), device=state.device)
    if state.matches:
        names, _ = parameter_layout(net)
        start = experts.flat(expert, start_epoch, names).to(state.device)
        target = experts.flat(expert, start_epoch + trajectory.expert_epochs,
                              names).to(state.device)
        augment_generator = state.generator("augment")
        augment = ((lambda x: augment_per_sample(x, state.dsa, augment_generator))
                   if spec.uses_dsa else None)
        final = student_trajectory(
            net, start.clone().requires_grad_(True), state.images, state.labels,
            state.learned["learned_lr"], trajectory.syn_steps, trajectory.batch_syn,
            state.generator("inner order"), augment, spec.precision,
        )
        loss = loss + trajectory_loss(final, start, target)
    return state.step(loss)  # adds the PTM loss, updates the images and the learned lr


def check_mtt(spec, where: str) -> None:
    """Check MTT's settings of ``spec``: :func:`check_trajectory`, and a student batch no larger
    than the synthetic set (a larger one would be the whole set under another run id)."""
    from ..data.datasets import get_info

    check_trajectory(spec.trajectory, where)
    images = int(spec.ipc) * get_info(spec.dataset).num_classes
    if spec.trajectory.batch_syn > images:
        raise ValueError(f"{where}: trajectory batch_syn (--batch-syn) is "
                         f"{spec.trajectory.batch_syn}, but the synthetic set has {images} images "
                         f"({spec.ipc} per class); give at most {images}, or 0 for all of them")


def learned_lr(spec, device) -> dict:
    """The student's learning rate, learned beside the images (SGD at ``lr_lr``, momentum 0.5)."""
    trajectory = spec.trajectory
    return {"learned_lr": (torch.tensor(float(trajectory.lr_init), device=device),
                           {"lr": trajectory.lr_lr, "momentum": 0.5})}


def expert_members(spec) -> list[tuple[MemberSpec, int]]:
    """The experts an MTT ``spec`` reads: members 0 … n−1 of its model on its dataset (their
    recipe by name; its values are the study's), each to the last epoch an iteration reads."""
    trajectory = spec.trajectory
    return [(MemberSpec(spec.dataset, spec.model, seed, recipe_name=trajectory.recipe),
             trajectory.needed_epochs) for seed in range(trajectory.n_experts)]


def bind_expert_recipe(spec, recipe_name: str, identity: str):
    """``spec`` matching experts of the recipe whose identity is ``identity``."""
    return replace(spec, trajectory=replace(spec.trajectory, pool_recipe=identity))


def load_experts(spec, pool_root):
    """The expert trajectories ``spec`` matches, checked now
    (:class:`~ptmdd_helpers.pools.experts.Experts`)."""
    from ..pools.experts import Experts

    trajectory = spec.trajectory
    return Experts(spec.dataset, spec.model, trajectory.n_experts, trajectory.needed_epochs,
                   trajectory.pool_recipe, trajectory.recipe, root=pool_root)


def resolve_cli_options(args, given: dict) -> dict:
    """``ptmdd distill --method MTT``: every expert on disk unless --experts, the experts'
    recipe identity as stored, and --pool (without --clom/--cclom) naming --model only."""
    from ..pools.experts import count_experts, stored_expert_identity

    if args.pool is not None and not (args.clom or args.cclom) and list(args.pool) != [args.model]:
        raise ValueError(
            f"--pool {','.join(args.pool)} without --clom/--cclom: MTT matches expert "
            f"trajectories of its --model ({args.model}) on --dataset, so --pool, if given, must "
            f"name that architecture; give --model {args.pool[0]} to match its experts, or add "
            f"--clom/--cclom to guide with that PTM pool")
    if "n_experts" not in given:  # every expert found; none: the error names the pretrain command
        given["n_experts"] = max(1, count_experts(args.dataset, args.model, "mtt", args.pool_root))
    identity = stored_expert_identity(args.dataset, args.model, given["n_experts"], "mtt",
                                      args.pool_root)
    if identity is not None:  # the run id names the experts on disk (pools.members.recipe_identity)
        given["pool_recipe"] = identity
    return given


MTT = register_method(Method(
    "MTT", mtt_iteration, iterations=5000, init="real", siamese=True,
    eval_epochs=1000, eval_augment="dsa", eval_learned_lr=True,
    options=TrajectorySpec, options_field="trajectory", ipc_defaults=mtt_defaults,
    check_options=check_mtt, learned=learned_lr, resources=load_experts,
    members=expert_members, bind_recipe=bind_expert_recipe, cli_resolve=resolve_cli_options,
    description="trajectory matching (Cazenavette et al., CVPR 2022); experts: ptmdd pretrain "
                "--recipe mtt"))
