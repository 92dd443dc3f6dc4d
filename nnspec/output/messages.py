"""Messages of rendering and writing dashboards: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations


def unknown_format(name: str, formats) -> str:
    return f"unknown format {name!r} (formats: {', '.join(formats)})"


def cannot_write(path: str, why: str) -> str:
    return f"cannot write '{path}': {why}"


def note_runs(names: list) -> str:
    return "views over steps: run " + ", ".join(names)
