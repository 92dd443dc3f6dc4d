"""Messages of the command line: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations


def init_no_input() -> str:
    return "cannot guess an input for this model: its first layer is not Linear, Conv or Embedding"


def init_input_hint() -> str:
    return "pass --input-shape, e.g. --input-shape 8,3,32,32 (batch first)"


def init_forward_failed(factory: str, what: str, why: str) -> str:
    return f"{factory}: a forward pass on {what} failed: {why}"


def init_random_batch(shape: tuple[int, ...]) -> str:
    return f"a random batch of shape {shape}"


def init_random_inputs(described: str) -> str:
    return f"random inputs {described}"


def init_exists(path: str) -> str:
    return f"'{path}' exists already and nnspec init will not overwrite it"


def init_exists_hint() -> str:
    return "pick another file with -o, or pass --force to replace it"
