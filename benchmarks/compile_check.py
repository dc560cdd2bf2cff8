"""Would ``torch.compile`` (inductor, CPU) help the evaluation training step? Gradients and speed.

Two questions decide it (issue 16: adopt only where gradients agree with eager to 1e-5 relative
and a benchmark shows a gain):

1. **Gradients.** For each architecture, ``--networks`` seeded networks (1×28×28 inputs, batch
   64, 16 for ResNets): the parameter gradients of one cross-entropy step in eager fp32, compiled
   fp32 and eager float64. Per network the largest relative error over the parameters (norm of the
   difference over the norm of the reference; parameters whose float64 gradient is zero up to
   rounding, the conv biases right before a norm, are skipped); printed: the worst network's
   eager−f64, compiled−f64 and compiled−eager, and how many networks are more than 1e-5 from
   float64. Inductor's layout optimization (channels_last convolution outputs) is on or off
   (``--layout``).
2. **Speed.** Milliseconds per training step of the evaluation's own loop
   (``training.train_epoch`` with ``make_optimizer``'s SGD; the whole set is one batch) on an
   IPC-10 set (100 images; ``--ipc``), eager and compiled, fp32 and bf16, and the seconds of the
   first two steps (compilation included).

``--group-norm float64`` compiles with ptmdd's evaluation backend,
``ptmdd_helpers.networks.compiling.inductor_float64_group_norm``: inductor's decomposition of
``aten.native_group_norm`` replaced by one that accumulates each group's mean and variance in
float64, what ``benchmarks/README.md`` found to matter, with inductor's graph caches off (they do
not key on a custom decomposition table).

``--double-backward`` also tries DC's gradient matching through a compiled network
(``create_graph=True``). ``--backend aot_eager`` runs everything without code generation (what
the test uses). ``benchmarks/README.md`` holds the latest results and the decision.

Usage: ``python benchmarks/compile_check.py --archs ConvNetW32,ConvNet --networks 8 --layout both``
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ptmdd_helpers.networks.compiling import inductor_float64_group_norm, parameter_gradients  # noqa: E402
from ptmdd_helpers.networks.models import create_model  # noqa: E402
from ptmdd_helpers.networks.training import (  # noqa: E402
    PRECISIONS,
    TrainRecipe,
    make_optimizer,
    train_epoch,
    with_precision,
)

SHAPE, CLASSES, TOLERANCE = (1, 28, 28), 10, 1e-5


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _build(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(arch, SHAPE[0], CLASSES, SHAPE[1:])


def gradient_agreement(arch: str, networks: int, backend: str = "inductor") -> dict:
    """Worst relative gradient errors over ``networks`` seeded ``arch`` networks (see module doc)."""
    net = _build(arch, 0)
    twin = copy.deepcopy(net)
    compiled = torch.compile(twin, backend=backend)
    batch = 16 if arch.startswith("ResNet") else 64
    worst = {"eager_f64": 0.0, "compiled_f64": 0.0, "compiled_eager": 0.0}
    beyond = {"eager": 0, "compiled": 0}
    for seed in range(networks):
        net.load_state_dict(_build(arch, seed).state_dict())
        twin.load_state_dict(net.state_dict())
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, *SHAPE, generator=generator)
        y = torch.randint(0, CLASSES, (batch,), generator=generator)
        reference = parameter_gradients(copy.deepcopy(net).double(), x.double(), y)
        eager, fused = parameter_gradients(net, x, y), parameter_gradients(compiled, x, y)
        scale = max(float(r.norm()) for r in reference)
        keep = [i for i, r in enumerate(reference) if float(r.norm()) > 1e-9 * scale]
        errors = {"eager_f64": max(_relative(eager[i], reference[i]) for i in keep),
                  "compiled_f64": max(_relative(fused[i], reference[i]) for i in keep),
                  "compiled_eager": max(_relative(fused[i], eager[i]) for i in keep)}
        worst = {k: max(worst[k], v) for k, v in errors.items()}
        beyond["eager"] += errors["eager_f64"] > TOLERANCE
        beyond["compiled"] += errors["compiled_f64"] > TOLERANCE
    return {"arch": arch, "networks": networks, **worst,
            "eager_beyond": beyond["eager"], "compiled_beyond": beyond["compiled"]}


def step_milliseconds(arch: str, precision: str, compiled: bool, steps: int,
                      backend: str = "inductor", ipc: int = 10) -> dict:
    """Milliseconds per evaluation training step on an IPC-``ipc`` set (one batch), and the first
    two steps' seconds."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(CLASSES * ipc, *SHAPE, generator=generator)
    y = torch.arange(CLASSES).repeat_interleave(ipc)
    net = _build(arch, 0)
    model = with_precision(net, precision)
    if compiled:
        model = torch.compile(model, backend=backend)
    optimizer, _ = make_optimizer(net, TrainRecipe(epochs=1))  # the evaluation's SGD

    def step():  # one epoch of the evaluation's loop: the whole set is one batch
        train_epoch(model, optimizer, x, y, len(y), generator)

    start = time.perf_counter()
    step()
    step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"arch": arch, "precision": precision, "compiled": compiled,
            "ms_per_step": 1000 * (time.perf_counter() - start) / steps, "first_two_s": first}


def double_backward(arch: str, backend: str = "inductor") -> str:
    """Whether DC's gradient matching (create_graph=True) runs through a compiled ``arch``."""
    net = _build(arch, 0)
    images = torch.randn(CLASSES, *SHAPE, requires_grad=True)
    try:
        loss = F.cross_entropy(torch.compile(net, backend=backend)(images), torch.arange(CLASSES))
        grads = torch.autograd.grad(loss, list(net.parameters()), create_graph=True)
        sum(g.pow(2).sum() for g in grads).backward()
    except Exception as error:  # the finding is the error itself
        return f"fails: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
    return "runs"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="ConvNetW32,ConvNet")
    parser.add_argument("--networks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per configuration (0: none)")
    parser.add_argument("--ipc", type=int, default=10, help="images per class of the timed set")
    parser.add_argument("--layout", choices=("on", "off", "both"), default="both",
                        help="inductor's layout optimization (torch._inductor.config)")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--group-norm", choices=("inductor", "float64"), default="inductor",
                        help="float64: inductor with group_norm_float64_statistics")
    parser.add_argument("--double-backward", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch._inductor.config as inductor_config

    if args.group_norm == "float64":
        args.backend = inductor_float64_group_norm  # its own graph caches off
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    layouts = {"on": [True], "off": [False], "both": [True, False]}[args.layout]
    result: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "backend": str(args.backend), "group_norm": args.group_norm, "agreement": [], "speed": []}
    for layout in layouts:
        inductor_config.layout_optimization = layout
        torch._dynamo.reset()
        print(f"\nlayout optimization {'on' if layout else 'off'}: worst network, "
              f"networks > {TOLERANCE:g} from float64", flush=True)
        for arch in archs:
            row = {**gradient_agreement(arch, args.networks, args.backend), "layout": layout}
            result["agreement"].append(row)
            print(f"  {arch:11s} eager−f64 {row['eager_f64']:.1e}  compiled−f64 "
                  f"{row['compiled_f64']:.1e}  compiled−eager {row['compiled_eager']:.1e}  "
                  f"beyond: eager {row['eager_beyond']}/{args.networks}, compiled "
                  f"{row['compiled_beyond']}/{args.networks}", flush=True)
        for arch in archs if args.steps else []:
            for precision in PRECISIONS:
                for compiled in (False, True):
                    if not compiled and not layout and len(layouts) > 1:
                        continue  # eager does not depend on inductor's settings: timed once
                    row = {**step_milliseconds(arch, precision, compiled, args.steps,
                                               args.backend, args.ipc), "layout": layout}
                    result["speed"].append(row)
                    print(f"  {arch:11s} {precision} {'compiled' if compiled else 'eager':8s} "
                          f"{row['ms_per_step']:8.2f} ms/step, first two steps "
                          f"{row['first_two_s']:.1f} s", flush=True)
    if args.double_backward:
        result["double_backward"] = {a: double_backward(a, args.backend) for a in archs}
        print("\ndouble backward (DC matching):", result["double_backward"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
