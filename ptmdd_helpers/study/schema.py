"""The schema of a notebook's merged parameters: every key a profile may set, with its type.

A profile is checked after ``shared`` is merged into each notebook's section and the ``--set``
overrides are applied, so a key is valid in ``shared`` when any notebook reads it. Unknown keys and
wrong types are reported by :func:`validate` as one paragraph that names the key, the profile and
the expected type. The schema only checks: the grids read the parameters as the profile wrote them,
so validation never changes a run id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

PositiveInt = Annotated[StrictInt, Field(ge=1)]
Count = Annotated[StrictInt, Field(ge=0)]
Number = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Method = Annotated[Literal["DC", "DSA", "DM", "MTT"],
                   BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]
PTMEpoch = Count | Literal["final"] | None
# α: a number, or per method ({DM: 10}), or per method and IPC ({DM: {10: 2000, 50: 1000}})
Alpha = Number | dict[StrictStr, Number | dict[StrictInt | StrictStr, Number]]


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
    init: Literal["real", "noise"] | None = None
    metric: Literal["ours"] | None = None
    augment: StrictBool | None = None
    dsa_flip: StrictBool | None = None
    bn_batch_per_class: PositiveInt | None = None
    precision: Literal["fp32", "bf16"] | None = None


class MTTSettings(DistillSettings):
    """MTT's settings: the spec's and its trajectory's (``distill.TrajectorySpec``)."""

    n_experts: PositiveInt | None = None
    syn_steps: PositiveInt | None = None
    expert_epochs: PositiveInt | None = None
    max_start_epoch: PositiveInt | None = None
    lr_lr: Positive | None = None
    lr_init: Positive | None = None
    batch_syn: Count | None = None


class DistillSection(DistillSettings):
    """``distill:`` shared settings, and a section per method that wins over them."""

    DC: DistillSettings | None = None
    DSA: DistillSettings | None = None
    DM: DistillSettings | None = None
    MTT: MTTSettings | None = None


class SGDSettings(Section):
    """How a network is trained with SGD: epochs, learning rate, momentum, decay, batch."""

    epochs: PositiveInt | None = None
    lr: Positive | None = None
    momentum: NonNegative | None = None
    weight_decay: NonNegative | None = None
    batch_size: PositiveInt | None = None


class ProtocolSettings(SGDSettings):
    """Evaluation protocol overrides (``evaluate.protocol_for``)."""

    augment: Literal["none", "dsa", "crop_scale_rotate", "crop_noise"] | None = None
    precision: Literal["fp32", "bf16"] | None = None


class EvalSection(ProtocolSettings):
    """``eval:`` the protocol, the evaluation architectures and networks per set."""

    archs: list[StrictStr] | None = None
    n_nets: PositiveInt | None = None
    DC: ProtocolSettings | None = None
    DSA: ProtocolSettings | None = None
    DM: ProtocolSettings | None = None
    MTT: ProtocolSettings | None = None


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
    """A target dataset and the other domain whose PTMs guide it through CCLoM."""

    target: StrictStr
    other: StrictStr


class BestOptions(Section):
    """``best:`` of 06, declared before any run."""

    kind: Literal["clom", "cclom"] = "clom"
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
    executor: Literal["local", "slurm"] = "local"
    workers: PositiveInt = 1
    slurm: dict[StrictStr, Any] | None = None
    # the study
    target: StrictStr
    other: StrictStr | None = None
    seeds: list[Count] = Field(min_length=1)
    ipcs: list[PositiveInt] = Field(min_length=1)
    methods: list[Method] = Field(default_factory=lambda: ["DM"], min_length=1)
    distill: DistillSection = Field(default_factory=DistillSection)
    alpha: Alpha = 100.0
    arch_alpha: dict[Method, dict[StrictStr, Number]] | None = None
    cclom_alpha: Alpha | None = None
    cclom_real_batch: PositiveInt | None = None
    pool: PoolSection
    experts: ExpertSection | None = None
    eval: EvalSection = Field(default_factory=EvalSection)
    # one notebook each
    references: References | None = None                        # 00
    n_models: list[PositiveInt] | None = None                   # 01
    archs: list[StrictStr] | None = None                        # 02
    combinations: list[list[StrictStr]] | None = None           # 02
    epochs: list[Count | Literal["final"]] | None = None        # 03
    early_epoch: Count | None = None                            # 03
    pairs: list[DomainPair] | None = None                       # 04
    conditions: list[StrictStr] | None = None                   # 04
    alphas: list[NonNegative] | None = None                     # 05
    ptm_only: StrictBool = True                                 # 05
    best: BestOptions | None = None                             # 06
    eval_archs: list[StrictStr] | None = None                   # 06


_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "text",
    "list_type": "a list, e.g. [1, 2]", "none_required": "null",
    "dict_type": "a mapping, e.g. {key: value}",
    "model_type": "a mapping of keys", "model_attributes_type": "a mapping of keys",
}


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the schema allows in the section at ``loc`` (empty when it is not a section)."""
    model: Any = NotebookParameters
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


def _describe(loc: tuple[Any, ...], errors: list[Mapping[str, Any]]) -> str:
    """One clause for one key's schema errors: the dotted key, what is wrong, what is expected."""
    key = ".".join(str(part) for part in loc) or "(top level)"
    first = errors[0]
    if first["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        hint = f"; valid keys there: {', '.join(valid)}" if valid else ""
        return f"unknown key `{key}` (misspelt?){hint}"
    if first["type"] == "missing":
        return f"`{key}` is missing"
    expected = " or ".join(dict.fromkeys(_expected(e) for e in errors))
    return f"`{key}`: expected {expected}, got {first.get('input')!r}"


def validate(params: Mapping[str, Mapping[str, Any]], where: str) -> None:
    """Check every notebook's merged parameters; ``ValueError`` naming each bad key if not."""
    problems: dict[str, list[str]] = {}
    for notebook, values in params.items():
        try:
            NotebookParameters.model_validate(dict(values))
        except ValidationError as error:
            by_key: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
            for item in error.errors():
                by_key.setdefault(_key(item), []).append(item)
            for loc, errors in by_key.items():
                problems.setdefault(_describe(loc, errors), []).append(notebook)
    if problems:
        clauses = [f"{clause} (in {', '.join(nbs) if len(nbs) < len(params) else 'every notebook'})"
                   for clause, nbs in problems.items()]
        raise ValueError(
            f"{where}: {'; '.join(clauses)}. Fix the profile file, or the --set override that "
            "names the key (values are YAML: --set seeds=[0,1,2], --set eval.n_nets=4)")
