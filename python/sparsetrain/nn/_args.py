"""Constructor argument checks shared by the sparse layers: every error names the layer."""

from __future__ import annotations

import math

MAX_INDEX = _MAX = 2**31 - 1  # column indices are int32


def size(layer: str, name: str, v, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= _MAX:
        raise ValueError(f"{layer}: {name} must be an int in [{minimum}, 2^31 - 1], got {v!r}")
    return v


def fraction(layer: str, name: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: {name} must be a number in [0, 1], got {v!r}") from None
    if isinstance(v, bool) or math.isnan(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"{layer}: {name} must be a number in [0, 1], got {v!r}")
    return f


def pair(layer: str, name: str, v, minimum: int) -> tuple:
    """An int or a pair of ints, each >= minimum, as nn.Conv2d takes them."""
    items = (v, v) if isinstance(v, int) and not isinstance(v, bool) else v
    if (
        not isinstance(items, (tuple, list))
        or len(items) != 2
        or not all(
            isinstance(i, int) and not isinstance(i, bool) and minimum <= i <= _MAX for i in items
        )
    ):
        raise ValueError(
            f"{layer}: {name} must be an int or a pair of ints >= {minimum}, got {v!r}"
        )
    return tuple(items)
