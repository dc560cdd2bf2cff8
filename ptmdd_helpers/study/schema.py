"""The schema of a notebook's merged parameters: every key a profile may set, with its type.

A profile is checked after ``shared`` is merged into each notebook's section and the ``--set``
overrides are applied, so a key is valid in ``shared`` when any notebook reads it. Unknown keys and
wrong types are reported by :func:`validate` as one paragraph that names the key, the profile and
the expected type. The grids read the validated values (:func:`validate`); the grid dump of every
profile (``benchmarks/dump_grids.py``) is the same as from the values as written. Every vocabulary
comes from where it is defined: the methods and their own settings from the method registry
(:func:`parameters_model` builds the per-method sections from it), precisions, augmentations,
initializations, metrics, guidance kinds and executors from their modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

from ..data.eval_augment import EVAL_AUGMENTS
from ..distill import REGISTRY, list_methods
from ..distill.matching import METRICS
from ..distill.spec import INITS
from ..networks.training import PRECISIONS
from ..pools.guidance import KINDS
from ..report.intervals import RELATIONS

EXECUTORS = ("local", "slurm")  # how the study runs its tasks (.tasks)
PRECISION_NAMES = tuple(PRECISIONS)

PositiveInt = Annotated[StrictInt, Field(ge=1)]
Count = Annotated[StrictInt, Field(ge=0)]
Number = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _registered(name: str) -> str:
    """``name`` if it is a registered method (upper case), else a ``ValueError`` listing them."""
    if name not in REGISTRY:
        raise ValueError(f"a registered method ({', '.join(list_methods())}), got {name!r}")
    return name


def _method_keys(table: dict) -> dict:
    """A per-method table's keys are registered methods, spelt as registered (or ``default``)."""
    wrong = [key for key in table if key not in REGISTRY and key != "default"]
    if wrong:
        raise ValueError(f"keys that are registered methods as spelt there ({', '.join(REGISTRY)}) "
                         f"or default; got {', '.join(map(repr, wrong))}")
    return table


# a method in a list (any case: methods: [dm] is DM)
Method = Annotated[StrictStr, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
                   AfterValidator(_registered)]
PTMEpoch = Count | Literal["final"] | None
# α: a number, or per method ({DM: 10}), or per method and IPC ({DM: {10: 2000, 50: 1000}})
Alpha = Number | Annotated[dict[StrictStr, Number | dict[StrictInt | StrictStr, Number]],
                           AfterValidator(_method_keys)]


class Section(BaseModel):
    """A profile section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class DistillSettings(Section):
    """``make_spec`` overrides (the distillation's hyper-parameters)."""

    model: StrictStr | None = None
    iterations: PositiveInt | None = None
    lr_img: Positive | None = None
    lr_net: Positive | None = None
    momentum_img: NonNegative | None = None
    batch_real: PositiveInt | None = None
    batch_train: PositiveInt | None = None
    outer_loop: PositiveInt | None = None
    inner_loop: PositiveInt | None = None
    init: Literal[INITS] | None = None
    metric: Literal[METRICS] | None = None
    augment: StrictBool | None = None
    dsa_flip: StrictBool | None = None
    bn_batch_per_class: PositiveInt | None = None
    precision: Literal[PRECISION_NAMES] | None = None


class SGDSettings(Section):
    """How a network is trained with SGD: epochs, learning rate, momentum, decay, batch."""

    epochs: PositiveInt | None = None
    lr: Positive | None = None
    momentum: NonNegative | None = None
    weight_decay: NonNegative | None = None
    batch_size: PositiveInt | None = None


class ProtocolSettings(SGDSettings):
    """Evaluation protocol overrides (``evaluate.protocol_for``)."""

    augment: Literal[EVAL_AUGMENTS] | None = None
    precision: Literal[PRECISION_NAMES] | None = None


class EvalSettings(ProtocolSettings):
    """``eval:`` the protocol, the evaluation architectures and networks per set."""

    archs: list[StrictStr] | None = None
    n_nets: PositiveInt | None = None


class RecipeSection(SGDSettings):
    """How pool members are trained (``pools.TrainRecipe``)."""

    milestones: list[Count] | None = None


class PoolSection(Section):
    """``pool:`` the PTM pool used where a notebook does not vary it."""

    arch: StrictStr
    n_models: PositiveInt
    epoch: PTMEpoch = None
    keep_epochs: list[Count] | None = None
    recipe: RecipeSection


class ExpertSection(Section):
    """``experts:`` how MTT's expert trajectories are trained (``pretrain --recipe mtt``)."""

    recipe: RecipeSection | None = None


class WholeReference(ProtocolSettings):
    """``references.whole``: the whole training set evaluated as a reference."""

    n_nets: PositiveInt | None = None
    arch: StrictStr | None = None
    method: Method | None = None


class References(Section):
    """``references:`` of 00 (random real subsets, the whole training set)."""

    random_real: StrictBool = True
    whole: WholeReference | None = None


class DomainPair(Section):
    """A target dataset and the other domain(s) whose PTMs guide it through CCLoM."""

    target: StrictStr
    other: StrictStr | list[StrictStr]


class ClaimTest(Section):
    """``claims.<name>``: how a notebook tests one claim, declared before the run
    (:func:`ptmdd_helpers.report.claims.declared`): superiority, non-inferiority by ``margin``
    points or equivalence within ±``margin`` points, and why that margin."""

    relation: Literal[RELATIONS] = ">"
    margin: Positive | None = None
    why: StrictStr | None = None


class BestOptions(Section):
    """``best:`` of 06, declared before any run."""

    kind: Literal[KINDS] = "clom"
    archs: list[StrictStr] = Field(min_length=1)
    n_models: PositiveInt
    epoch: PTMEpoch = None
    alpha: Alpha | None = None
    source: StrictStr | None = None


class NotebookParameters(Section):
    """Every key a notebook's merged parameters may hold (see the profiles in ``parameters/``)."""

    # where and how (never part of a result)
    profile: StrictStr
    store: StrictStr | None = None
    pool_root: StrictStr | None = None
    data_root: StrictStr | None = None
    figures_dir: StrictStr | None = None
    runs_dir: StrictStr | None = None
    device: StrictStr = "auto"
    compile: StrictBool | None = None  # evaluation's compiled training step; null: the default (on)
    executor: Literal[EXECUTORS] = "local"
    workers: PositiveInt = 1
    slurm: dict[StrictStr, Any] | None = None
    # the study
    target: StrictStr
    other: StrictStr | None = None
    seeds: list[Count] = Field(min_length=1)
    ipcs: list[PositiveInt] = Field(min_length=1)
    methods: list[Method] = Field(default_factory=lambda: ["DM"], min_length=1)
    distill: DistillSettings = Field(default_factory=DistillSettings)  # + per method (below)
    alpha: Alpha = 100.0
    arch_alpha: Annotated[dict[StrictStr, dict[StrictStr, Number]],
                          AfterValidator(_method_keys)] | None = None
    cclom_alpha: Alpha | None = None
    cclom_real_batch: PositiveInt | None = None
    pool: PoolSection
    experts: ExpertSection | None = None
    eval: EvalSettings = Field(default_factory=EvalSettings)  # + per method (below)
    # one notebook each
    claims: dict[StrictStr, ClaimTest] | None = None            # every notebook
    references: References | None = None                        # 00
    published: dict[StrictStr, Number] | None = None            # 00: published accuracy (%)
    n_models: list[PositiveInt] | None = None                   # 01
    archs: list[StrictStr] | None = None                        # 02
    combinations: list[list[StrictStr]] | None = None           # 02
    matched_control: StrictBool = False                         # 02
    epochs: list[Count | Literal["final"]] | None = None        # 03
    early_epoch: Count | None = None                            # 03
    pairs: list[DomainPair] | None = None                       # 04
    conditions: list[StrictStr] | None = None                   # 04
    near: StrictStr | None = None                               # 04: a near other domain
    far: StrictStr | None = None                                # 04: a far other domain
    alphas: list[NonNegative] | None = None                     # 05
    ptm_only: StrictBool = True                                 # 05
    best: BestOptions | None = None                             # 06
    eval_archs: list[StrictStr] | None = None                   # 06


def _option_type(item: dataclasses.Field) -> Any:
    """The profile type of a method's own setting, from its default's: int a whole number >= 0,
    float a finite number (ranges are the method's check, run when the grid is built)."""
    kind = {int: Count, float: Number, bool: StrictBool, str: StrictStr}.get(type(item.default), Any)
    return kind | None


def method_settings(method: Any) -> type[Section]:
    """``distill.<METHOD>:`` the spec's settings and the method's own (those with a flag)."""
    own = {item.name: (_option_type(item), None)
           for item in (dataclasses.fields(method.options) if method.options else ())
           if method.option_flag(item.name)}
    if not own:
        return DistillSettings
    return create_model(f"{method.name}Settings", __base__=DistillSettings, **own)


def parameters_model() -> type[Section]:
    """The schema of a notebook's parameters with a ``distill`` and an ``eval`` section per
    registered method (a method registered later is in the next model built)."""
    methods = list(REGISTRY.values())
    distill = create_model("DistillSection", __base__=DistillSettings,
                           snapshots=(list[PositiveInt] | None, None),  # not a spec setting
                           # distillations per batch of replicates (study.packing); not a setting
                           replicas=(PositiveInt | Literal["auto"] | None, None),
                           **{m.name: (method_settings(m) | None, None) for m in methods})
    evaluation = create_model("EvalSection", __base__=EvalSettings,
                              **{m.name: (ProtocolSettings | None, None) for m in methods})
    return create_model("ProfileParameters", __base__=NotebookParameters,
                        distill=(distill, Field(default_factory=distill)),
                        eval=(evaluation, Field(default_factory=evaluation)))


_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "text",
    "list_type": "a list, e.g. [1, 2]", "none_required": "null",
    "dict_type": "a mapping, e.g. {key: value}",
    "model_type": "a mapping of keys", "model_attributes_type": "a mapping of keys",
}


def _valid_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows in the section at ``loc`` (empty when it is not a section)."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, Section)),
                     None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


_UNION_TAGS = {"int", "float", "str", "bool", "list", "dict", "none"}


def _key(error: Mapping[str, Any]) -> tuple[Any, ...]:
    """The error's location without pydantic's union-member tags (``constrained-int``, ...)."""
    return tuple(part for part in error["loc"] if not (isinstance(part, str) and (
        "[" in part or "-" in part or part in _UNION_TAGS)))


def _expected(error: Mapping[str, Any]) -> str:
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}
    if error["type"] in bounds:
        return f"a value {bounds[error['type']]} {next(iter(error['ctx'].values()))}"
    if error["type"] in _TYPE_WORDS:
        return _TYPE_WORDS[error["type"]]
    text = error["msg"]
    for prefix in ("Input should be ", "Value should be ", "Value error, "):
        text = text.removeprefix(prefix)
    return text


def _describe(model: Any, loc: tuple[Any, ...], errors: list[Mapping[str, Any]]) -> str:
    """One clause for one key's schema errors: the dotted key, what is wrong, what is expected."""
    key = ".".join(str(part) for part in loc) or "(top level)"
    first = errors[0]
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(model, loc[:-1])
        hint = f"; valid keys there: {', '.join(valid)}" if valid else ""
        return f"unknown key `{key}` (misspelt?){hint}"
    if first["type"] == "missing":
        return f"`{key}` is missing"
    expected = " or ".join(dict.fromkeys(_expected(e) for e in errors))
    return f"`{key}`: expected {expected}, got {first.get('input')!r}"


def _without_nulls(value: Any) -> Any:
    """``value`` with the null entries of its mappings removed, at every depth."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def validate(params: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    """Every notebook's merged parameters, validated: the schema's values (method names in upper
    case, numbers as their types, defaults filled in; inside a section, keys that are null left
    out, so a section's unset keys do not override ``shared``), which the grids read;
    ``ValueError`` naming each bad key if not."""
    problems: dict[str, list[str]] = {}
    model = parameters_model()
    validated = {}
    for notebook, values in params.items():
        try:
            dumped = model.model_validate(dict(values)).model_dump()
            validated[notebook] = {key: _without_nulls(value) for key, value in dumped.items()}
        except ValidationError as error:
            by_key: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
            for item in error.errors():
                by_key.setdefault(_key(item), []).append(item)
            for loc, errors in by_key.items():
                problems.setdefault(_describe(model, loc, errors), []).append(notebook)
    if problems:
        clauses = [f"{clause} (in {', '.join(nbs) if len(nbs) < len(params) else 'every notebook'})"
                   for clause, nbs in problems.items()]
        raise ValueError(
            f"{where}: {'; '.join(clauses)}. Fix the profile file, or the --set override that "
            "names the key (values are YAML: --set seeds=[0,1,2], --set eval.n_nets=4)")
    return validated
