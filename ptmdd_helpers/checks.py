"""Checks of user-given values: one clear ``ValueError`` (what, the value, the fix) before any work.

The command line shows a ``ValueError`` as one line without a traceback (``cli.checks.user_errors``), so
every check here raises ``ValueError``, also for a value of the wrong type. ``name`` is how the
caller names the value: an option (``--ipc``) or an argument (``make_spec: ipc``).
"""

from __future__ import annotations

import math


def _shown(value: object, right_type: bool = False) -> str:
    """``value``, with its type if that is wrong, e.g. ``1.5 (float)``."""
    return repr(value) if right_type else f"{value!r} ({type(value).__name__})"


def is_int(value: object) -> bool:
    """Whether ``value`` is a Python int (not a bool, not a float with an integral value)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def check_int(value: object, name: str, *, minimum: int | None = None, fix: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` is an int (not a bool) of at least ``minimum``."""
    expected = "an integer" + (f" ≥ {minimum}" if minimum is not None else "")
    if not is_int(value) or (minimum is not None and value < minimum):
        raise ValueError(f"{name} must be {expected}, got {_shown(value, is_int(value))}"
                         + (f"; {fix}" if fix else ""))


def check_number(
    value: object, name: str, *, positive: bool = False, minimum: float | None = None,
    fix: str = "",
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number (> 0 if ``positive``, ≥
    ``minimum`` if given)."""
    expected = ("a finite number" + (" > 0" if positive else "")
                + (f" ≥ {minimum:g}" if minimum is not None else ""))
    if (not is_number(value) or (positive and not value > 0)
            or (minimum is not None and value < minimum)):
        raise ValueError(f"{name} must be {expected}, got {_shown(value, is_number(value))}"
                         + (f"; {fix}" if fix else ""))


def check_bool(value: object, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {_shown(value)}")


def check_names(value: object, name: str, *, what: str = "architecture names") -> None:
    """Raise ``ValueError`` unless ``value`` is a non-empty list or tuple of non-empty strings
    (a single string would be read as its letters)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        example = f"({value!r},)" if isinstance(value, str) else "('ConvNet',)"
        raise ValueError(f"{name} must be a list or tuple of {what}, e.g. {example}; "
                         f"got {_shown(value)}")
    if not value or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{name} must hold at least one of the {what}, each a non-empty "
                         f"string; got {value!r}")


# Evaluation networks per architecture: each trains from scratch, and the mean over networks has
# an SD that shrinks as 1/sqrt(n); past this the cost grows with no use (the study takes 5-20).
MAX_EVAL_NETS = 10_000


def check_eval_nets(value: object, name: str, *, minimum: int | None = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an int from ``minimum`` to :data:`MAX_EVAL_NETS`
    (the number of evaluation networks per architecture)."""
    if minimum is not None:
        check_int(value, name, minimum=minimum, fix="the number of evaluation networks per "
                  "architecture")
    if is_int(value) and value > MAX_EVAL_NETS:
        raise ValueError(
            f"{name} must be at most {MAX_EVAL_NETS} evaluation networks per architecture, got "
            f"{value}: each network is trained from scratch, and the mean accuracy's error "
            f"shrinks only as 1/sqrt(n), so {MAX_EVAL_NETS} networks already pin the mean far more "
            f"tightly than the spread between distillation seeds; give fewer (the study uses 5-20)")
