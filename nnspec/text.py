"""Small text helpers every stage's messages share."""

from __future__ import annotations


def names(items, limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out
