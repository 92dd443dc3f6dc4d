"""Messages of parsing queries: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nnspec.text import names


def parse_error(expected: Iterable[object]) -> str:
    return f"cannot parse query here; expected {names(expected, 10)}"


def unknown_step(name: str, kind_names: Iterable[object]) -> str:
    return f"unknown step '{name}' (transforms and marks: {names(kind_names, 30)})"


def mark_not_last(name: str) -> str:
    return f"mark '{name}' must be the last step of the query"


def unknown_argument(step: str, name: str, allowed: Iterable[object]) -> str:
    allowed = list(allowed)
    what = f"allowed: {names(allowed)}" if allowed else "it takes none"
    return f"'{step}' has no argument '{name}' ({what})"


def bad_argument(step: str, name: str, value: object, want: str) -> str:
    return f"'{step}': {name}={value!r} must be {want}"


def unknown_function(name: str, known: Iterable[object]) -> str:
    return f"unknown function '{name}' (functions: {names(known, 12)}, or *)"


def bad_step_range(lo: object, hi: object) -> str:
    return f"step range [{lo}:{hi}] is empty: the first step must be below the last"


def not_over_steps(kind: str, recordable: Sequence[str]) -> str:
    *some, last = recordable
    return f"'{kind}' cannot be recorded over steps: only {', '.join(some)} and {last} can"


def loss_needs_over_steps(kind: str = "loss") -> str:
    return f"'{kind}' is a series over training steps"


def loss_needs_over_steps_hint(kind: str = "loss") -> str:
    return f"write '{kind} over steps' (or '{kind} over steps[100:]')"


def check_has_mark(mark: str) -> str:
    return f"a check compares numbers and draws nothing: drop '| {mark}'"


def pick_not_allowed(kind: str, allowed: Iterable[object]) -> str:
    return f"'@' chooses one tensor of a module's output or arguments: {names(allowed)} take it, {kind} does not"


def bad_index_step(step: int) -> str:
    if step == 0:
        return "an index step of 0 selects nothing: a step must be a positive integer"
    return f"an index step of {step} is not supported: tensors are indexed with positive steps only"


def bad_index_step_hint(step: int) -> str:
    if step == 0:
        return "write [::1] or leave the step out, e.g. [0:8]"
    return "write the slice forwards, e.g. [::1] or [2:8:2] (PyTorch cannot index backwards)"


def index_too_large(text: str, limit: int) -> str:
    shown = text if len(text) <= 24 else text[:20] + "..."
    return f"index {shown} is out of range for any tensor (at most {limit:.3g} either way)"


def not_finite(text: str) -> str:
    shown = text if len(text) <= 24 else text[:20] + "..."
    return f"{shown} is not a finite number (floats reach about ±1.8e308)"
