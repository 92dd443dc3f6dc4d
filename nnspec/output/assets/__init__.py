"""The dashboard page's assets (its CSS and JavaScript, the graph explorer), inlined into every page."""

from __future__ import annotations

import os


def asset(name: str) -> str:
    """The text of the asset ``name`` (a file next to this module)."""
    with open(os.path.join(os.path.dirname(__file__), name), encoding="utf-8") as f:
        return f.read()
