"""Compiled evaluation training: ``torch.compile`` (inductor) where its gradients agree with eager.

Evaluation trains hundreds of small networks per study worker, and on CPU most of a training step
outside the convolutions is element-wise work (pooling, group norm, ReLU) that inductor fuses. A
network is compiled only where the compiled gradients agree with eager's to 1e-5 relative and a
benchmark shows a gain (``benchmarks/compile_check.py``; the numbers are in
``benchmarks/README.md``):

* **ConvNetW32** (the cpu profile's network) qualifies, compiled with inductor whose group-norm
  decomposition accumulates each group's mean and variance in float64
  (:func:`group_norm_float64_statistics`): inductor's own one sums a channels_last tensor in
  float32 lane by lane, less accurately, which flips ReLUs and moves the gradients;
* the other architectures train eagerly (their compiled gradients disagree, or no gain was shown).

So :func:`compiled_for_training` compiles only ConvNetW32, on CPU, in fp32, trained one network
at a time (not the vmap ensemble), by default only from :data:`MIN_BATCH` images per mini-batch
(where it pays), and only after a probe in this process: one forward/backward
of a seeded probe network on seeded inputs of each batch shape the training will use, eager and
compiled; where compiling raises or a gradient differs from eager's by more than
:data:`TOLERANCE`, the networks train eagerly and a ``RuntimeWarning`` says why. The probe depends
on the architecture and the shapes only, never on the set being evaluated, so whether a network
was compiled does not depend on which evaluation came first in a process.

Compiling costs about 8-20 s per process and shape (inductor's on-disk caches are off for this
backend: they do not key on a custom decomposition, and would serve a graph built with inductor's
own group norm); later networks of that architecture and shape reuse it. It is on by default
(``compile=None``: where it pays), everywhere allowed with ``compile=True``, and off with
``compile=False``, ``--no-compile``, the profile key ``compile: false`` or ``PTMDD_COMPILE=0``.
Compiled and eager training agree to float rounding (a ReLU flipped now and then; mean accuracies
within 0.11 points in eleven paired FashionMNIST evaluations), like the ensemble and the loop:
neither is part of a run id; each evaluation row records ``compiled``.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..seeding import make_generator
from .models import create_model
from .training import seeded_model

COMPILED_ARCHS = ("ConvNetW32",)
TOLERANCE = 1e-5  # largest relative difference of a parameter's gradient, compiled against eager
# By default a training step is compiled only from this many images per mini-batch, where the
# benchmark shows compilation repaying its cost (benchmarks/README.md). ``compile=True`` compiles
# any size.
MIN_BATCH = 100


_SWITCH_VALUES = {"0": False, "false": False, "no": False, "off": False,
                  "1": True, "true": True, "yes": True, "on": True}


def compile_default() -> bool:
    """Whether evaluation compiles by default: yes, unless ``PTMDD_COMPILE`` is 0/false/no/off
    (case-insensitive; unset or empty: yes); any other value raises ``ValueError`` naming it."""
    value = os.environ.get("PTMDD_COMPILE", "").strip()
    if not value:
        return True
    if value.lower() not in _SWITCH_VALUES:
        raise ValueError(
            f"the environment variable PTMDD_COMPILE is {value!r}, which is neither on nor off. "
            "Fix: set it to 0, false, no or off (train evaluation networks eagerly) or to 1, "
            "true, yes or on (compile where it pays), or unset it")
    return _SWITCH_VALUES[value.lower()]


def group_norm_float64_statistics(input, weight, bias, N, C, HxW, group, eps):  # noqa: A002, N803
    """``aten.native_group_norm`` with each group's mean and variance accumulated in float64.

    Returns (output in the input's dtype, mean, rstd) as the aten op does.
    """
    grouped = input.unflatten(1, (group, C // group)).to(torch.float64)
    dims = list(range(2, grouped.ndim))
    mean = grouped.mean(dims, keepdim=True)
    rstd = torch.rsqrt((grouped - mean).pow(2).mean(dims, keepdim=True) + eps)
    mean, rstd = mean.flatten(1).to(input.dtype), rstd.flatten(1).to(input.dtype)  # (N, group)
    shape = [1, C] + [1] * (input.ndim - 2)

    def per_channel(t):
        return t.repeat_interleave(C // group, dim=1).reshape([N, *shape[1:]])

    out = (input - per_channel(mean)) * per_channel(rstd)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, mean, rstd


def inductor_float64_group_norm(graph, example_inputs):
    """A ``torch.compile`` backend: inductor with :func:`group_norm_float64_statistics` and its
    graph caches off (they would serve a graph compiled with inductor's own group norm)."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    table = {**select_decomp_table(),
             torch.ops.aten.native_group_norm.default: group_norm_float64_statistics}
    with torch._functorch.config.patch(enable_autograd_cache=False):
        return compile_fx(graph, example_inputs, decompositions=table,
                          config_patches={"fx_graph_cache": False})


def compile_skip_reason(arch: str, device: torch.device, precision: str) -> str | None:
    """Why ``arch`` networks on ``device`` in ``precision`` are not compiled (``None``: they may be)."""
    if arch not in COMPILED_ARCHS:
        return (f"{arch} is not compiled: its compiled gradients were not shown to agree with "
                "eager's (benchmarks/README.md)")
    if torch.device(device).type != "cpu":
        return f"compilation was measured on CPU only, not on {torch.device(device).type}"
    if precision != "fp32":
        return f"compilation was measured in fp32 only, not in {precision}"
    return None


def batch_sizes(n_images: int, batch_size: int) -> tuple[int, ...]:
    """The mini-batch sizes of one epoch over ``n_images`` (the full one, then the remainder)."""
    rest = n_images % batch_size if n_images > batch_size else 0
    return (min(batch_size, n_images), rest) if rest else (min(batch_size, n_images),)


def _relative_errors(compiled: Sequence[torch.Tensor], eager: Sequence[torch.Tensor]) -> float:
    """The largest relative difference over the parameters whose eager gradient is not zero up to
    float32 rounding (norm above 1e-6 of the largest: the conv biases right before a norm)."""
    scale = max(float(g.norm()) for g in eager)
    return max((float((c.double() - e.double()).norm() / e.double().norm())
                for c, e in zip(compiled, eager, strict=True) if float(e.norm()) > 1e-6 * scale),
               default=0.0)


def parameter_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradients of ``model``'s trainable parameters for the cross-entropy of one batch."""
    loss = F.cross_entropy(model(x), y)
    return list(torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad]))


@functools.cache
def _probe(arch: str, input_shape: tuple[int, ...], num_classes: int, sizes: tuple[int, ...],
           threads: int) -> str | None:
    """Compile ``arch`` for ``sizes`` batches of ``input_shape`` here; ``None`` if it agrees, else why not."""
    del threads  # part of the cache key: inductor's kernels are built for the thread count
    network = seeded_model(lambda: create_model(arch, input_shape[0], num_classes, input_shape[1:]),
                           "compile-probe", arch)
    network.train()
    compiled = torch.compile(copy.deepcopy(network), backend=inductor_float64_group_norm)
    draws = make_generator("compile-probe", arch, *input_shape)
    try:
        for size in sizes:
            x = torch.randn(size, *input_shape, generator=draws)
            y = torch.randint(0, num_classes, (size,), generator=draws)
            error = _relative_errors(parameter_gradients(compiled, x, y),
                                     parameter_gradients(network, x, y))
            if not error <= TOLERANCE:
                return (f"its compiled gradients differ from eager's by {error:.1e} (relative; "
                        f"more than {TOLERANCE:g}) on a probe batch of {size}")
    except Exception as error:  # noqa: BLE001 - any failure to compile means: train eagerly
        return f"compiling it failed ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    return None


def compiled_for_training(
    network: nn.Module, arch: str, input_shape: Sequence[int], num_classes: int,
    sizes: Sequence[int], device: torch.device, precision: str, compile: bool | None = None,  # noqa: A002
) -> nn.Module | None:
    """``network`` compiled for training (sharing its parameters), or ``None`` to train it eagerly.

    ``input_shape`` is one image's (C, H, W); ``sizes`` are the batch sizes the training will
    use (:func:`batch_sizes`). ``compile``: ``False`` never; ``True`` wherever
    :func:`compile_skip_reason` allows; ``None`` (default) there too, if :func:`compile_default`
    and the largest batch holds at least :data:`MIN_BATCH` images. Where an architecture
    qualifies but its probe fails, a ``RuntimeWarning`` (once per process, architecture and
    shapes) names the reason.
    """
    if compile is False or (compile is None and not compile_default()):
        return None
    if compile_skip_reason(arch, device, precision) is not None:
        return None
    if compile is None and max(sizes) < MIN_BATCH:
        return None
    key = (arch, tuple(int(n) for n in input_shape), int(num_classes), tuple(sizes), torch.get_num_threads())
    first = _probe.cache_info().currsize
    reason = _probe(*key)
    if reason is not None:
        if _probe.cache_info().currsize > first:  # a new probe: say it once
            warnings.warn(f"{arch} networks are trained eagerly, not compiled: {reason}",
                          RuntimeWarning, stacklevel=3)
        return None
    return torch.compile(network, backend=inductor_float64_group_norm)
