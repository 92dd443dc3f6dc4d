"""Messages of the command line: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations


def init_no_input() -> str:
    return "cannot guess an input for this model: its first layer is not Linear, Conv or Embedding"


def init_input_hint() -> str:
    return "pass --input-shape, e.g. --input-shape 8,3,32,32 (batch first)"


def init_forward_failed(factory: str, shape, why: str) -> str:
    return f"{factory}: a forward pass on a random batch of shape {shape} failed: {why}"


def init_exists(path: str) -> str:
    return f"'{path}' exists already and nnspec init will not overwrite it"


def init_exists_hint() -> str:
    return "pick another file with -o, or pass --force to replace it"
