"""Small text helpers every stage's messages share."""

from __future__ import annotations

from collections.abc import Iterable
from typing import SupportsIndex, SupportsInt


def names(items: Iterable[object], limit: int = 8) -> str:
    listed = list(items)
    shown = ", ".join(str(i) for i in listed[:limit])
    return shown + (f", … ({len(listed) - limit} more)" if len(listed) > limit else "")


def prod(xs: Iterable[SupportsInt | SupportsIndex]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out
