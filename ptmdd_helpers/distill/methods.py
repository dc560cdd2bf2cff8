"""The method registry: a distillation method is one module that registers itself here.

A :class:`Method` declares everything that is the method's own: its name, its defaults (iterations,
image lr, initialization; the outer/inner loops by IPC are common to all), whether its batches get
Siamese augmentation, its own settings (a frozen dataclass stored in one field of the
:class:`~.spec.DistillSpec`), tensors it learns beside the images, what it reads before it starts
(e.g. MTT's experts), the pool members it needs, its evaluation protocol's defaults and one
iteration. The engine (:mod:`.engine`) owns what every method shares: the initial set, the image
optimizer, checkpoint and resume, the NaN stop, precision and the PTM loss α·L_PTM, added at every
image update (:meth:`~.engine.DistillState.step`). The CLI's ``--method`` choices, the options of a
method's settings, the profile schema's per-method sections and the evaluation protocol defaults
are all read from here (:func:`list_methods`, :func:`get_method`). docs/method.md#adding-a-method
shows a new method end to end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..evaluation.protocol import EvalProtocol

# The options' ``dataclasses.field(metadata=...)`` keys: the command-line flag (default
# ``--<name>``; "": not on the command line) and its help text.
FLAG, HELP = "flag", "help"


@dataclass(frozen=True)
class Method:
    """One distillation method: its name, defaults, own settings, needs and iteration.

    - ``iteration(state)`` runs one iteration on a :class:`~.engine.DistillState` and returns its
      loss (a tensor on the device); it updates the images with ``state.step(loss)``, which adds
      the PTM loss.
    - ``options``: the frozen dataclass of the method's own settings, stored in the spec's
      ``options_field`` (MTT keeps ``trajectory``, so its stored run ids hold);
      ``ipc_defaults(ipc)`` returns ``(spec defaults, options defaults)`` by IPC;
      ``check_options(spec, where)`` raises ``ValueError`` for a bad one, before anything runs.
    - ``learned(spec, device)``: tensors learned beside the images, ``{name: (tensor, optimizer
      group options)}``, checkpointed, checked for NaN and stored with the images.
    - ``resources(spec, pool_root)`` loads (and checks, before anything is written) what the
      iterations read, as ``state.resources``; ``members(spec)`` lists the pool members read, as
      ``(MemberSpec, epoch)`` pairs (the study trains them first); ``bind_recipe(spec,
      recipe_name, identity)`` returns ``spec`` naming the identity of their recipe.
    - ``cli_resolve(args, given)`` completes the options given on the command line.
    - ``eval_*``: the evaluation protocol's defaults (:func:`protocol_for`).
    - ``loops``: whether an iteration runs the spec's ``outer_loop`` steps (with ``inner_loop``
      epochs between them), so that its cost grows linearly with them (the cost estimate times
      one and two outer steps).
    - ``batch_iteration(states)``, optional: one iteration of several replicates computed together
      (:func:`~.loop.run_replicas`), each state's exactly as ``iteration`` computes it alone (its
      own streams), up to float rounding; returns their losses. ``None``: no batching.
    """

    name: str
    iteration: Callable[[Any], Any]
    iterations: int = 1000
    lr_img: float = 0.1
    init: str = "noise"
    siamese: bool = False
    eval_epochs: int = 1000
    eval_augment: str = "dsa"
    eval_learned_lr: bool = False
    eval_reference_augment: Callable[[str | None, str | None], str | None] | None = None
    options: type | None = None
    options_field: str = "options"
    ipc_defaults: Callable[[int], tuple[dict, dict]] | None = None
    check_options: Callable[[Any, str], None] | None = None
    learned: Callable[[Any, Any], dict] | None = None
    resources: Callable[[Any, Any], Any] | None = None
    members: Callable[[Any], list] | None = None
    cli_resolve: Callable[[Any, dict], dict] | None = None
    bind_recipe: Callable[[Any, str, str], Any] | None = None
    batch_iteration: Callable[[Any], Any] | None = None
    loops: bool = False  # its iteration runs the spec's outer/inner loops (DC, DSA)
    description: str = ""

    def option_names(self) -> tuple[str, ...]:
        """The names of the method's own settings (the fields of ``options``)."""
        return tuple(f.name for f in dataclasses.fields(self.options)) if self.options else ()

    def option_flag(self, name: str) -> str:
        """The command-line flag of the setting ``name`` (``--syn-steps``; metadata may rename it,
        or hide it with "")."""
        meta = next(f.metadata for f in dataclasses.fields(self.options) if f.name == name)
        return meta.get(FLAG, "--" + name.replace("_", "-"))

    def spec_defaults(self, ipc: int) -> tuple[dict, dict]:
        """The spec's defaults (iterations, lr_img, init and those by IPC) and the options'."""
        spec = {"iterations": self.iterations, "lr_img": self.lr_img, "init": self.init}
        options: dict = {}
        if self.ipc_defaults is not None:
            by_ipc, options = self.ipc_defaults(ipc)
            spec.update(by_ipc)
        return spec, dict(options)


REGISTRY: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry (a name registered twice is an error); return it."""
    if not isinstance(method, Method):
        raise ValueError(f"register_method takes a distill.methods.Method, got {method!r}")
    if not method.name or method.name != method.name.upper() or not method.name.isidentifier():
        raise ValueError(f"a method's name is upper-case letters, digits and _, e.g. 'DM'; got "
                         f"{method.name!r}")
    if method.name in REGISTRY and REGISTRY[method.name] is not method:
        raise ValueError(f"method {method.name} is registered already; pick another name or "
                         "unregister_method it first")
    if method.options is not None and not dataclasses.is_dataclass(method.options):
        raise ValueError(f"{method.name}: options must be a frozen dataclass of the method's own "
                         f"settings, got {method.options!r}")
    REGISTRY[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a registered method (tests of a toy method clean up with it)."""
    REGISTRY.pop(name, None)


def list_methods() -> list[str]:
    """The registered method names, in registration order (DC, DSA, DM, MTT first)."""
    return list(REGISTRY)


def method_modules() -> list[str]:
    """The modules, outside this package, whose methods are registered in this process: what a
    worker process imports (:func:`import_method_modules`) to know the same methods."""
    names = {m.iteration.__module__ for m in REGISTRY.values()}
    return sorted(n for n in names if not n.startswith("ptmdd_helpers.") and n != "__main__")


def import_method_modules(names: list[str] | tuple[str, ...]) -> None:
    """Import ``names`` (from :func:`method_modules`), registering their methods here; a module
    that cannot be imported is an error naming it and the fix."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ValueError(f"the method module {name!r} registered in the study's process "
                             f"cannot be imported in a worker ({error}); put it on the Python "
                             f"path (PYTHONPATH) or run the study with workers: 1") from None


def get_method(name: object, where: str = "method") -> Method:
    """The registered method called ``name`` (any case); else ``ValueError`` listing them."""
    key = name.upper() if isinstance(name, str) else name
    if key not in REGISTRY:
        raise ValueError(f"unknown {where} {name!r}; valid: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def learns_lr(name: object) -> bool:
    """Whether the registered method ``name`` learns the learning rate its evaluation trains at
    (``False`` for a name not registered)."""
    method = REGISTRY.get(name)
    return method is not None and method.eval_learned_lr


def options_fields() -> list[str]:
    """The spec fields that hold a method's own settings: ``options`` and those methods name."""
    return list(dict.fromkeys(["options", *(m.options_field for m in REGISTRY.values())]))


def protocol_for(
    method: str, *, dataset: str | None = None, arch: str | None = None, **overrides: object
) -> EvalProtocol:
    """The evaluation protocol ``method`` declares (DC: 300 epochs, no augmentation; DSA, DM:
    1000 epochs with DSA; MTT: as DSA at the learned lr), with ``overrides`` replacing fields.

    ``dataset`` and ``arch`` (the evaluation network) only pick a method's reference augmentation
    (DC: ``crop_scale_rotate`` on MNIST, ``crop_noise`` for ConvNetBN) unless ``augment`` is given.
    ``method`` is case-insensitive; unknown methods or field names raise ``ValueError``.
    """
    entry = get_method(method)
    names = {f.name for f in dataclasses.fields(EvalProtocol)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown protocol field(s) {unknown}; valid: {sorted(names)}")
    augment = entry.eval_augment
    if entry.eval_reference_augment is not None:
        augment = entry.eval_reference_augment(dataset, arch) or augment
    protocol = EvalProtocol(epochs=entry.eval_epochs, augment=augment,
                            learned_lr=entry.eval_learned_lr)
    return replace(protocol, **overrides)
