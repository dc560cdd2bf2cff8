"""The one builder of tidy frames: a row per evaluated network (or per run), spec fields as columns.

:meth:`RunStore.frame <ptmdd_helpers.store.runstore.RunStore.frame>`, the study's frames and the
notebooks all build their rows with :func:`run_records`, so a column means the same everywhere:
``run_id``, ``kind``, an evaluation's ``subject_id`` (the run id of the set it trained on), every
spec field (:func:`~ptmdd_helpers.store.runstore.spec_fields`, e.g. ``subject.seed``,
``protocol.epochs``), then the entries of the run's ``metrics["rows"]`` (for a run without rows:
its scalar metrics, dicts of scalars flattened as ``"name.key"``). A row entry named like a spec
field is merged when equal to it and kept as ``"row.<name>"`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .runfiles import Run


def same(a: object, b: object) -> bool:
    """``a == b`` as a bool; incomparable values (arrays, odd types) are different."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values are different
        return False


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, object]:
    """Scalar metrics of a run without rows (dicts of scalars flattened as ``"name.key"``)."""
    out: dict[str, object] = {}
    for key, value in metrics.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, dict):
            for inner, item in value.items():
                if item is None or isinstance(item, (bool, int, float, str)):
                    out[f"{key}.{inner}"] = item
    return out


def run_records(run: Run, labels: Mapping[str, Any] | None = None) -> list[dict[str, object]]:
    """The tidy records of one stored run, after ``labels`` (see the module docstring)."""
    from ..specs import spec_fields, spec_id, to_tuple

    base = {**(labels or {}), "run_id": run.id, "kind": run.kind, **spec_fields(run.spec)}
    spec = run.spec
    subject = spec.get("subject") if isinstance(spec, dict) else getattr(spec, "subject", None)
    if isinstance(subject, dict) or hasattr(subject, "__dataclass_fields__"):
        # an evaluation: the run id of the set it trained on
        base["subject_id"] = spec_id(subject)
    rows = run.metrics.get("rows")
    entries = (rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
               else [scalar_metrics(run.metrics)])
    records = []
    for entry in entries:
        record = dict(base)
        for key, value in entry.items():
            value = to_tuple(value)
            if key in base and not same(base[key], value):
                record[f"row.{key}"] = value
            else:
                record[key] = value
        records.append(record)
    return records


def tidy_frame(records: Iterable[Mapping[str, object]], labels: Iterable[str] = ()) -> pd.DataFrame:
    """A frame of ``records``; a label column of integers with gaps stays integer (``Int64``).

    A spec column that repeats a label (``subject.ipc`` beside the label ``ipc``, equal wherever
    both are set) is dropped, so the frame carries each field once.
    """
    import pandas as pd

    table = pd.DataFrame.from_records(list(records))
    for name in dict.fromkeys(labels):
        if name not in table:
            continue
        values = table[name].dropna()
        if len(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[name] = table[name].astype("Int64")
        for column in [c for c in table.columns if c.endswith(f".{name}") and c != name]:
            both = table[name].notna() & table[column].notna()
            if both.any() and all(same(a, b) for a, b in zip(table.loc[both, name],
                                                              table.loc[both, column], strict=True)):
                table = table.drop(columns=column)
    return table


def filter_frame(table: pd.DataFrame, filters: Mapping[str, object]) -> pd.DataFrame:
    """The rows of ``table`` whose column equals each filter's value (or is one of a
    list/tuple/set of values); ``ValueError`` naming the columns for an unknown one."""
    for column, value in filters.items():
        if table.empty:
            break
        if column not in table.columns:
            columns = ", ".join(map(str, table.columns))
            raise ValueError(f"no column {column!r} to filter on; columns: {columns}")
        keep = [_matches(cell, value) for cell in table[column]]
        table = table[keep]
    return table.reset_index(drop=True)


def _matches(cell: object, value: object) -> bool:
    """Whether a frame cell passes a filter value (equal, or one of a list/tuple/set)."""
    if same(cell, value):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(same(cell, v) for v in value)
    if isinstance(value, float) and isinstance(cell, float):
        return math.isnan(value) and math.isnan(cell)
    return False
