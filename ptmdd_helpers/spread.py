"""The one convention for "±" in ptmdd: the sample standard deviation (ddof 1) and its n.

Tables, plots, the CLI, a run's ``metrics.json`` and the verdicts all use :func:`mean_sd`. In the
study the values are per-seed means (the SD over distillation seeds, n = seeds); inside one
evaluation run, whose networks share one training set, they are the networks' accuracies (the SD
over networks, reported as such). A single value has no SD (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def sample_variance(values: Sequence[float]) -> float:
    """The sample variance (ddof 1) of at least 2 ``values``."""
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


def mean_sd(values: Iterable[float]) -> tuple[float, float | None, int]:
    """(mean, sample SD with ddof 1 or ``None`` for fewer than 2 values, n) of ``values``."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None, n
    return mean, math.sqrt(sample_variance(values)), n


def plus_minus(mean: float, sd: float | None, n: int, scale: float = 100.0) -> str:
    """``"71.45 ± 0.69 (n=6)"`` (``"71.45 (n=1)"`` without an SD), values × ``scale``."""
    spread = "" if sd is None else f" ± {scale * sd:.2f}"
    return f"{scale * mean:.2f}{spread} (n={n})"
