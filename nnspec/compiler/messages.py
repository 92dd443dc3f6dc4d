"""Messages of compiling queries against a model (selectors, sources, checks): every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

from collections.abc import Iterable

from nnspec.text import names


def no_input() -> str:
    return "this spec needs an input for its forward pass, and has none"


def no_input_hint() -> str:
    return "add 'input: {random: {shape: [8, 3, 32, 32]}}', a dataset or a file, or pass inputs="


def no_attention(types: Iterable[str] = ()) -> str:
    found = list(dict.fromkeys(types))
    seen = f"; its module classes are {names(found, 12)}" if found else ""
    return (
        "the model has no nn.MultiheadAttention and no module whose class name holds 'Attention' or 'Attn' "
        "(GPT2Attention, BertSelfAttention, LlamaAttention, T5Attention, timm's Attention), which is what "
        f"'attention of' reads{seen}"
    )


def attention_hint(paths: Iterable[str]) -> str:
    return (
        f"attention modules: {names(paths)} (nn.MultiheadAttention, and the innermost modules whose class "
        "name holds 'Attention' or 'Attn')"
    )


def needs_train() -> str:
    return "'over steps' needs a training run, and the spec has no 'train:' and no run was given"


def needs_train_hint() -> str:
    return "add 'train: {steps: 200, optimizer: {name: adam, lr: 0.01}}', or render a recorded run: --run runs/NAME"


def over_steps_must_reduce(step: str | None, reductions: Iterable[str]) -> str:
    what = f"'{step}' cannot come here" if step else "the view keeps whole tensors"
    *some, last = reductions
    return (
        f"{what}: a view over steps records a few numbers per layer and step; start its steps with "
        f"{', '.join(some)} or {last}"
    )


def no_match(selector: str) -> str:
    return f"no module matches '{selector}'"


def no_match_hint(close: Iterable[str]) -> str:
    found = list(close)
    if not found:
        return "run 'nnspec layers SPEC' to list the module paths"
    return f"did you mean {' or '.join(repr(c) for c in found)}? ('nnspec layers SPEC' lists them all)"


def no_params(kind: str, selector: str) -> str:
    return f"'{selector}' matches modules, but none has {kind}"


def holds_no_params(selector: str, paths: Iterable[str]) -> str:
    found = list(paths)
    one = len(found) == 1
    return f"'{selector}' matches {'the module' if one else 'the modules'} {names(found)}, which hold{'s' if one else ''} no parameters"


def shared_param(asked: str, first: str, others: Iterable[str]) -> str:
    drawn = f", drawn as {first}" if asked != first else ""
    return f"{asked} is shared with {names(others)} (one tensor{drawn})"


def bad_regex(pattern: str, why: str) -> str:
    return f"invalid regular expression /{pattern}/: {why}"


def regex_timeout(pattern: str, seconds: float) -> str:
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    return f"regular expression /{shown}/ took longer than {seconds:g} s to match the module names (it backtracks)"


def regex_timeout_hint() -> str:
    return "avoid nested repeats such as (a+)+; a glob (layer1.*.conv2) or a simpler pattern does the same"


def unknown_type(name: str) -> str:
    return f"no module of type '{name}' in the model"


def max_marks_over(n: int, limit: int) -> str:
    return f"max_marks={n} is above the limit of {limit}"


def update_ratio_needs_steps() -> str:
    return "update_ratio is ‖Δw‖/‖w‖ of one optimizer step: it needs weights over steps"


def update_ratio_needs_steps_hint() -> str:
    return "write e.g. 'weights of * over steps | update_ratio | line'"


def comparison_outside_expect() -> str:
    return "a comparison ('< 0.5') belongs in an expect: check, not in a view"


def comparison_outside_expect_hint() -> str:
    return "move this line under 'expect:', or drop the comparison to draw the values"


def check_needs_comparison() -> str:
    return "a check needs a comparison at the end, e.g. '| dead_fraction < 0.5'"


def backend_cannot(backend: str, what: str, why: str) -> str:
    return f"this view needs a {what} pass, which the {backend} backend cannot run: {why}"
