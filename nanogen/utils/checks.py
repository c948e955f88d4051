"""Argument checks shared by the models, so that a bad size reads the same everywhere."""
from __future__ import annotations

import numbers

__all__ = ["positive_int"]


def positive_int(value, what: str) -> int:
    """``value`` as an int, or a ValueError saying that ``what`` must be a positive int.

    A bool is refused (``True`` is an int to Python, but never a size someone meant); NumPy's
    integer scalars are accepted, as they come out of array arithmetic."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)
