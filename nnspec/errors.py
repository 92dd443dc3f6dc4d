"""One error hierarchy for everything nnspec tells a user.

``SpecError`` is the user's input (always with a span), ``ModelError`` the
user's model failing, ``InternalError`` our own bug. ``format_error`` turns
any of them into ``file:line:col: error: ...`` with the line and a caret.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node came from: file, 1-based line and column."""

    file: str
    line: int
    col: int
    text: str | None = None  # the line itself, where there is no file to read it from

    def shifted(self, line: int, col: int) -> Span:
        """The span of a position ``line``/``col`` (1-based) inside this one."""
        if line == 1:
            return Span(self.file, self.line, self.col + col - 1, self.text)
        return Span(self.file, self.line + line - 1, col)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class NnspecError(Exception):
    """Base of every error nnspec raises on purpose."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint

    def __str__(self) -> str:
        return format_error(self)


class SpecError(NnspecError):
    """The spec (or a query in it) is wrong; points at the place."""


class ModelError(NnspecError):
    """The user's model, checkpoint or input failed."""


class InternalError(NnspecError):
    """nnspec built something invalid: a bug to report."""


class SpecErrors(SpecError):
    """Several validation problems at once (the first few are shown)."""

    SHOWN = 3

    def __init__(self, errors: list[SpecError]):
        super().__init__(errors[0].message, errors[0].span, errors[0].hint)
        self.errors = tuple(errors)

    def __str__(self) -> str:
        parts = [format_error(e) for e in self.errors[: self.SHOWN]]
        more = len(self.errors) - self.SHOWN
        if more > 0:
            parts.append(f"... and {more} more")
        return "\n".join(parts)


def source_line(span: Span) -> str | None:
    """The text of the span's line, or None when the file cannot be read (or is no
    regular file: a pipe or a device never ends); control characters shown as \ufffd."""
    import os

    if not os.path.isfile(span.file):
        return None
    try:
        with open(span.file, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, start=1):
                if i == span.line:
                    return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in line.rstrip("\r\n"))
                if i > span.line:
                    break
    except (OSError, ValueError):
        return None
    return None


def format_error(err: NnspecError) -> str:
    """``file:line:col: error: msg``, the line, a caret, then ``hint: ...``."""
    head = f"{err.span}: {err.kind}: {err.message}" if err.span else f"{err.kind}: {err.message}"
    lines = [head]
    if err.span is not None:
        text = err.span.text if err.span.text is not None else source_line(err.span)
        if text:  # "": a file whose lines are never shown (not a spec)
            lines.append(f"  {text}")
            lines.append("  " + " " * max(err.span.col - 1, 0) + "^")
    if err.hint:
        lines.append(f"hint: {err.hint}")
    return "\n".join(lines)
