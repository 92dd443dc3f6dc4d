"""Messages of transforms, structure views, series and checks: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

from nnspec.text import prod


def graph_too_deep(depth: int, deepest: int) -> str:
    return f"graph(depth={depth}) is deeper than the model's {deepest} levels of modules"


def note_folded(n: int) -> str:
    return f"{n} repeated blocks folded (fold=false shows each)"


def no_functions() -> str:
    return "the model uses no activation function nnspec knows (function * found none)"


def pca_needs_samples(layer: str, shape) -> str:
    return f"pca needs several samples along the first dimension; {layer} has shape {tuple(shape)}"


def pca_nonfinite(layer: str, n: int) -> str:
    return f"pca needs finite values; {layer} holds {n} NaN/Inf (see '| stats')"


def colour_needs_values(query: str) -> str:
    return f"graph(color=...) needs one value per layer; '{query}' does not give that (end it with '| mean', '| std', '| norm', …)"


def note_colour(query: str) -> str:
    return f"colour: {query} (a collapsed node: the mean over the layers inside; grey: no value)"


def no_steps_in_range(lo, hi) -> str:
    return f"no recorded step in [{'' if lo is None else lo}:{'' if hi is None else hi}]"


def note_first_nonfinite_step(step: int) -> str:
    return f"first NaN/Inf at step {step} (marked)"


def needs_2d(mark: str, layer: str, shape) -> str:
    return f"'{mark}' draws 2-D tensors, and {layer} has shape {tuple(shape)}"


def needs_2d_hint(shape) -> str:
    first = ", ".join(["0"] * (len(shape) - 2))
    return f"add '| flatten' to get {shape[0]}×{prod(shape[1:])}, or index it, e.g. '[{first}]'"


def step_needs_tensors(step: str) -> str:
    return f"'{step}' works on tensors, and the data here is already a table"


def dim_out_of_range(step: str, dim: int, layer: str, shape) -> str:
    return f"'{step}(dim={dim})' does not fit {layer} of shape {tuple(shape)}"


def note_block_mean(shape, out_shape) -> str:
    return f"{shape[0]}×{shape[1]} → {out_shape[0]}×{out_shape[1]}, block mean"


# what one value of a block stands for, by ``downsample(agg=…)``
BLOCK_AGG_TEXT = {
    "mean": "block mean",
    "absmax": "largest magnitude per block",
    "rms": "root mean square per block",
    "std": "standard deviation per block",
}


def note_blocks(shape, out_shape, agg: str) -> str:
    return f"{shape[0]}×{shape[1]} → {out_shape[0]}×{out_shape[1]}, {BLOCK_AGG_TEXT[agg]}"


def note_nonfinite(nan: int, inf: int) -> str:
    return f"{nan} NaN and {inf} Inf not drawn (counted)"


def note_sampled(n: int, numel: int) -> str:
    return f"{n} of {numel} values sampled"


def note_outside(n: int) -> str:
    return f"{n} values outside the range not drawn (counted)"


def internal_view_error(why: str) -> str:
    return f"internal error while drawing this view ({why}); please report it with the spec"


def run_lacks(run: str, missing: list, spec_name: str, same_spec: bool) -> str:
    what = "; ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    origin = (
        "it was recorded with this spec's earlier version" if same_spec else f"it was recorded by spec '{spec_name}'"
    )
    return f"run '{run}' has no record of {what}: {origin}, which did not ask for it"


def run_lacks_hint() -> str:
    return "add this view to the spec the run is recorded with and record again; views it did record still draw"


def note_other_model(run: str) -> str:
    return f"run '{run}' was recorded from a model with a different architecture"


def note_nonfinite_steps(layer: str, bad: int, total: int, first: int) -> str:
    return f"{layer}: NaN/Inf at {bad} of {total} recorded steps from step {first} (counted in the table, not drawn)"


def check_needs_values(kind: str) -> str:
    return f"a check compares one value per layer (or per layer and step), and this query gives {kind}"


def check_needs_values_hint() -> str:
    return "end it with a reduction: | mean, | max, | norm, | dead_fraction, | nan_count …"


def note_kernel_order(layer: str, was: tuple, now: tuple) -> str:
    return f"{layer}: a channels-last kernel {was} (h, w, in, out) drawn as (out, in, h, w) {now}"


def no_scalars(run: str, patterns, tags: list) -> str:
    shown = ", ".join(tags[:30]) + (f", … ({len(tags)} in all)" if len(tags) > 30 else "") if tags else "none"
    return f"run '{run}' has no scalar matching {', '.join(patterns)}; its scalars: {shown}"
