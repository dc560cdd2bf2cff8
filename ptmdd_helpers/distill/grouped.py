"""Per-group parameter gradients from one forward and one backward pass ("grouped autograd").

DC matches, class by class, the gradient of the mean loss of a class's images. Instead of one
forward/backward per class, :func:`per_group_gradients` runs the network once on the images of
all classes (concatenated, class by class), back-propagates the sum of the weighted per-sample
losses once down to the *outputs* of the layers that own the requested parameters (so autograd
computes no parameter gradient itself), and then forms each group's parameter gradient from that
group's slice of the layer inputs and output gradients:

* ``Conv2d`` weight: ``convolution_backward`` on the slice (weight only); bias: sum of the slice.
* ``Linear`` weight: ``gᵀ x`` over the slice; bias: sum of the slice.
* ``GroupNorm``, ``LayerNorm`` and ``BatchNorm`` in eval mode (affine): ``Σ x̂ · g`` and ``Σ g`` with
  ``x̂`` the normalized input, recomputed from the saved input.

With ``create_graph=True`` every step is differentiable, so the gradients can be differentiated
again w.r.t. the images (DC's synthetic side). This is exact because no layer mixes the samples of
a batch: convolutions, linear layers, instance/group/layer norm and *eval-mode* BatchNorm act on
each sample alone. A train-mode BatchNorm (batch statistics couple the samples), a parameter of a
module type not listed above, or a module called twice is reported by :func:`grouped_support`; the
caller then uses one pass per group instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..networks.training import full_precision

# On a CPU, a pass is sized so that its largest activation is about 64 MB (128 FashionMNIST images
# in ConvNet): on the 2-core test machine (benchmarks/README.md) DC IPC 1 with 256 real images per
# class took 6.2 s in passes of 8 MB, 5.2 s at 64 MB and 6.6 s at 400 MB, the per-class loop 5.3 s.
# On other devices one pass holds everything.
CPU_PASS_BYTES = 64 * 2**20
_ACTIVATION_BYTES: dict[tuple, int] = {}

_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm)
_SUPPORTED = (nn.Conv2d, nn.Linear, *_NORMS)


def activation_bytes(net: nn.Module, sample: torch.Tensor) -> int:
    """Bytes of the largest layer output for one image like ``sample`` (C, H, W); cached per arch."""
    key = (getattr(net, "arch", None), tuple(sample.shape), sample.dtype)
    if key[0] is not None and key in _ACTIVATION_BYTES:
        return _ACTIVATION_BYTES[key]
    largest = [sample.numel() * sample.element_size()]

    def measure(module, args, output):
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output[0].numel() * output.element_size())

    modes = {module: module.training for module in net.modules()}
    handles = [m.register_forward_hook(measure) for m in net.modules() if not any(m.children())]
    try:
        net.eval()  # eval mode: a BatchNorm must not update its running statistics here
        with torch.no_grad():
            net(sample.unsqueeze(0).expand(2, *sample.shape))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    if key[0] is not None:
        _ACTIVATION_BYTES[key] = largest[0]
    return largest[0]


def images_per_pass(net: nn.Module, sample: torch.Tensor, total: int) -> int:
    """How many images like ``sample`` one pass should hold on its device (see CPU_PASS_BYTES)."""
    if sample.device.type != "cpu":
        return max(total, 1)
    return max(1, CPU_PASS_BYTES // activation_bytes(net, sample))


def _owners(net: nn.Module, params: Sequence[torch.Tensor]) -> list[tuple[nn.Module, str]]:
    """The (module, attribute name) that holds each parameter, in the order of ``params``."""
    where = {id(p): (m, name) for m in net.modules() for name, p in m.named_parameters(recurse=False)}
    missing = [i for i, p in enumerate(params) if id(p) not in where]
    if missing:
        raise ValueError(f"parameters {missing} are not parameters of the network")
    return [where[id(p)] for p in params]


def _coupling_layer(net: nn.Module) -> nn.Module | None:
    """The first BatchNorm in train mode (its batch statistics couple the samples), if any."""
    return next((m for m in net.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training), None)


def couples_samples(net: nn.Module) -> bool:
    """Whether ``net``'s output for one sample depends on the other samples of its batch now."""
    return _coupling_layer(net) is not None


def grouped_support(net: nn.Module, params: Sequence[torch.Tensor]) -> str | None:
    """``None`` if :func:`per_group_gradients` is exact for ``net`` now, else the reason it is not."""
    coupling = _coupling_layer(net)
    if coupling is not None:
        return f"{type(coupling).__name__} in train mode couples the samples of a batch"
    for module, _ in _owners(net, params):
        if not isinstance(module, _SUPPORTED):
            return f"no per-group gradient rule for {type(module).__name__}"
        if isinstance(module, nn.Conv2d) and (
            isinstance(module.padding, str) or module.padding_mode != "zeros"
        ):
            return "a Conv2d with string padding or a padding mode other than zeros"
    return None


def _conv_weight(module: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.convolution_backward(
        g, x, module.weight, None, list(module.stride), list(module.padding),
        list(module.dilation), False, [0, 0], module.groups, [False, True, False],
    )[1]


def _normalized(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of a norm layer normalized as the layer does, before its affine transform."""
    if isinstance(module, nn.GroupNorm):
        return F.group_norm(x, module.num_groups, None, None, module.eps)
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, None, None, module.eps)
    shape = (1, -1) + (1,) * (x.dim() - 2)  # eval-mode BatchNorm: running statistics
    mean = module.running_mean.view(shape)
    return (x - mean) * torch.rsqrt(module.running_var.view(shape) + module.eps)


def _group_gradient(module: nn.Module, name: str, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The gradient of parameter ``name`` of ``module`` from one group's inputs and output grads,
    in the parameter's dtype (under a bf16 autocast a convolution's is computed in bfloat16)."""
    dtype = getattr(module, name).dtype
    return _group_gradient_in(module, name, x, g).to(dtype)


def _group_gradient_in(module: nn.Module, name: str, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Conv2d) and name == "weight" and g.dtype != x.dtype:
        return torch.ops.aten.convolution_backward(  # bf16 output gradient: the bf16 kernel
            g, x.to(g.dtype), module.weight.to(g.dtype), None, list(module.stride),
            list(module.padding), list(module.dilation), False, [0, 0], module.groups,
            [False, True, False],
        )[1]
    g = full_precision(g) if g.dtype != x.dtype else g
    if isinstance(module, nn.Conv2d):
        return _conv_weight(module, x, g) if name == "weight" else g.sum(dim=(0, 2, 3))
    if isinstance(module, nn.Linear):
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        return g2.T @ x2 if name == "weight" else g2.sum(0)
    if isinstance(module, nn.LayerNorm):
        reduce = tuple(range(g.dim() - len(module.normalized_shape)))
    else:
        reduce = (0, *range(2, g.dim()))  # all but the channel dimension
    if name == "weight":
        return (_normalized(module, x) * g).sum(dim=reduce)
    return g.sum(dim=reduce)


def per_group_gradients(
    net: nn.Module,
    params: Sequence[torch.Tensor],
    images: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    sizes: Sequence[int],
    *,
    create_graph: bool = False,
) -> list[torch.Tensor]:
    """Gradients of Σ_{i∈group} weights_i · CE(net(images)_i, targets_i) per group, one pass.

    ``images`` hold the groups one after another (``sizes`` samples each). Returns one tensor per
    parameter, shaped ``(len(sizes), *param.shape)``. With ``weights = 1/n_c`` on the samples of
    class ``c`` this is, class by class, the gradient of the mean cross-entropy. Check
    :func:`grouped_support` first.
    """
    if sum(sizes) != len(images):
        raise ValueError(f"group sizes {list(sizes)} do not add up to {len(images)} images")
    owners = _owners(net, params)
    modules = list(dict.fromkeys(module for module, _ in owners))
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    twice: list[str] = []

    def remember(module, args, output):
        if module in seen:
            twice.append(type(module).__name__)
        seen[module] = (args[0], output)

    handles = [module.register_forward_hook(remember) for module in modules]
    try:
        logits = net(images)
    finally:
        for handle in handles:
            handle.remove()
    if twice:
        raise ValueError(f"{', '.join(twice)} called more than once in one forward pass")
    loss = (F.cross_entropy(logits, targets, reduction="none") * weights).sum()
    outputs = [seen[module][1] for module in modules]
    out_grads = dict(zip(modules, torch.autograd.grad(loss, outputs, create_graph=create_graph),
                         strict=True))
    # one split per tensor (not one slice per group): its backward is a single concatenation
    split = {module: (seen[module][0] if create_graph else seen[module][0].detach(),
                      out_grads[module]) for module in modules}
    split = {module: (x.split(list(sizes)), g.split(list(sizes))) for module, (x, g) in split.items()}
    grads = []
    # without create_graph, no graph either: the rules read the parameters (a convolution's
    # weight, a norm's eps), and a recorded graph would make a later backward differentiate
    # through them, at the cost of another pass over all the images
    with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
        for module, name in owners:
            xs, gs = split[module]
            grads.append(torch.stack([
                _group_gradient(module, name, x, g) if len(x)
                else torch.zeros_like(getattr(module, name))
                for x, g in zip(xs, gs, strict=True)
            ]))
    return grads
