"""Every message nnspec shows a user, in one place.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations


def _names(items, limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def did_you_mean(name: str) -> str:
    return f"did you mean '{name}'?"


# --- spec files -------------------------------------------------------------
def yaml_syntax(problem: str) -> str:
    return f"invalid YAML: {problem}"


def empty_spec() -> str:
    return "the spec file is empty; it needs at least 'nnspec: 1', 'model' and 'views'"


def not_a_mapping() -> str:
    return "a spec must be a YAML mapping with keys nnspec, model, views, …"


def cannot_read(path: str, why: str) -> str:
    return f"cannot read spec file '{path}': {why}"


def duplicate_key(key: str) -> str:
    return f"key '{key}' appears twice in the same mapping"


def unknown_key(key: str, where: str, allowed) -> str:
    return f"unknown key '{key}' in {where} (allowed: {_names(allowed, 12)})"


def missing_key(key: str, where: str) -> str:
    return f"{where} is missing the required key '{key}'"


def input_kinds() -> str:
    return "input needs exactly one of 'random', 'dataset' (with 'features'), 'file' or 'tokens'"


def ragged_tokens(lengths) -> str:
    return f"token sequences must have one length; they have {_names(lengths)}"


def unknown_tokens(tokens) -> str:
    return f"tokens not in the vocab: {_names(dict.fromkeys(tokens))}"


def bad_choice(where: str, value, choices) -> str:
    return f"{where}: {value!r} is not one of {_names(choices)}"


def bad_const(where: str, value, want) -> str:
    if where == "nnspec":
        return f"nnspec: {value!r} is not a format this version reads; use 'nnspec: {want}'"
    return f"{where} must be {want!r}, got {value!r}"


def schema_problem(where: str, detail: str) -> str:
    return f"{where}: {detail}"


def yaml_bool_hint() -> str:
    return "YAML reads unquoted on, off, yes, no, true and false as booleans: quote them ('on')"


def max_marks_range(value: int, limit: int) -> str:
    return f"max_marks must be between 1 and {limit}, got {value}"


# --- models, checkpoints, inputs --------------------------------------------
def no_model() -> str:
    return "the spec names no model"


def no_model_hint() -> str:
    return "add 'model: {factory: pkg.module:callable}' or pass model= to nnspec.render"


def bad_factory(factory: str, why: str) -> str:
    return f"cannot import model factory '{factory}': {why}"


def factory_failed(factory: str, why: str) -> str:
    return f"model factory '{factory}' raised {why}"


def not_a_module(factory: str, got: str) -> str:
    return f"model factory '{factory}' returned {got}, not a torch.nn.Module"


def checkpoint_unreadable(path: str, why: str) -> str:
    return f"cannot load checkpoint '{path}': {why}"


def checkpoint_mismatch(path: str, missing, unexpected, shapes) -> str:
    parts = []
    if missing:
        parts.append(f"missing {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {_names(unexpected)}")
    if shapes:
        parts.append("wrong shape " + _names(f"{k} {a} vs model {b}" for k, a, b in shapes))
    return f"checkpoint '{path}' does not fit the model: " + "; ".join(parts)


def no_cuda() -> str:
    return "device: cuda was asked for but torch sees no CUDA device"


def no_input() -> str:
    return "this spec needs an input for its forward pass, and has none"


def no_input_hint() -> str:
    return "add 'input: {random: {shape: [8, 3, 32, 32]}}', a dataset or a file, or pass inputs="


def unknown_dataset(name: str, known) -> str:
    return f"unknown data set '{name}' (local vega-datasets: {_names(known, 20)})"


def unknown_columns(missing, columns) -> str:
    return f"no column {_names(missing)} in the data set (columns: {_names(columns, 20)})"


def non_numeric_features(cols) -> str:
    return f"features must be numeric; {_names(cols)} are not"


def input_file(path: str, why: str) -> str:
    return f"cannot load input file '{path}': {why}"


def forward_failed(why: str, ran) -> str:
    done = _names(ran, 6) if ran else "none"
    return f"the model's forward pass failed: {why} (modules that ran: {done})"


def unknown_loss(name: str) -> str:
    return f"unknown loss '{name}': use mse, cross_entropy, sum or module:callable"


def loss_failed(name: str, why: str) -> str:
    return f"loss '{name}' failed: {why}"


def needs_loss(what: str) -> str:
    return f"{what} need a loss to differentiate, and the spec has no 'loss'"


def needs_loss_hint() -> str:
    return "add 'loss: sum' (gradient of the output's sum) or 'loss: mse' with a target"


def loss_needs_target(name: str) -> str:
    return f"loss '{name}' needs a target, and the input has none"


def loss_needs_target_hint() -> str:
    return "use 'loss: sum', or an input with a target (dataset with 'target', or a file with 'y')"


# --- queries ----------------------------------------------------------------
def parse_error(expected) -> str:
    return f"cannot parse query here; expected {_names(expected, 10)}"


def unknown_step(name: str, kind_names) -> str:
    return f"unknown step '{name}' (transforms and marks: {_names(kind_names, 30)})"


def mark_not_last(name: str) -> str:
    return f"mark '{name}' must be the last step of the query"


def unknown_argument(step: str, name: str, allowed) -> str:
    allowed = list(allowed)
    what = f"allowed: {_names(allowed)}" if allowed else "it takes none"
    return f"'{step}' has no argument '{name}' ({what})"


def bad_argument(step: str, name: str, value, want: str) -> str:
    return f"'{step}': {name}={value!r} must be {want}"


def unknown_function(name: str, known) -> str:
    return f"unknown function '{name}' (functions: {_names(known, 12)}, or *)"


def no_attention() -> str:
    return "the model has no nn.MultiheadAttention module to take attention weights from"


def attention_hint(paths) -> str:
    return f"attention modules: {_names(paths)}"


def attention_not_called(path: str) -> str:
    return f"{path} was not called in the forward pass, so it has no attention weights"


def graph_too_deep(depth: int, deepest: int) -> str:
    return f"graph(depth={depth}) is deeper than the model's {deepest} levels of modules"


def note_folded(n: int) -> str:
    return f"{n} repeated blocks folded (fold=false shows each)"


def no_functions() -> str:
    return "the model uses no activation function nnspec knows (function * found none)"


def needs_graph() -> str:
    return "'graph' draws the architecture: use it with the 'graph' source (query: graph)"


def note_first_tiles(keep: int, total: int) -> str:
    return f"first {keep} of {total} tiles (mark budget)"


def note_first_sequence() -> str:
    return "the first sequence of the batch (index to pick another, e.g. [3])"


def note_rows_sum() -> str:
    return "each row (a query position) sums to 1 over the keys"


def pca_needs_samples(layer: str, shape) -> str:
    return f"pca needs several samples along the first dimension; {layer} has shape {tuple(shape)}"


def pca_nonfinite(layer: str, n: int) -> str:
    return f"pca needs finite values; {layer} holds {n} NaN/Inf (see '| stats')"


def colour_needs_values(query: str) -> str:
    return f"graph(color=...) needs one value per layer; '{query}' does not give that (end it with '| mean', '| std', '| norm', …)"


def note_colour(query: str) -> str:
    return f"colour: {query} (a collapsed node: the mean over the layers inside; grey: no value)"


def train_needs_loss() -> str:
    return "train: needs a loss to minimise, and the spec has no 'loss'"


def train_step_failed(step: int, why: str) -> str:
    return f"training failed at step {step}: {why}"


def bad_optimizer(name: str, why: str) -> str:
    return f"optimizer {name}: {why}"


def note_trained(steps: int, name: str, lr, first: float, last: float) -> str:
    return f"trained {steps} steps ({name}, lr {lr:g}): loss {first:.4g} → {last:.4g}"


def needs_train() -> str:
    return "'over steps' needs a training run, and the spec has no 'train:' and no run was given"


def needs_train_hint() -> str:
    return "add 'train: {steps: 200, optimizer: {name: adam, lr: 0.01}}', or render a recorded run: --run runs/NAME"


def over_steps_must_reduce(step: str | None) -> str:
    what = f"'{step}' cannot come here" if step else "the view keeps whole tensors"
    return (
        f"{what}: a view over steps records a few numbers per layer and step; start its steps with "
        "stats, histogram, norm, mean, max, min, std, dead_fraction, nan_count, inf_count or update_ratio"
    )


def no_steps_in_range(lo, hi) -> str:
    return f"no recorded step in [{'' if lo is None else lo}:{'' if hi is None else hi}]"


def note_first_nonfinite_step(step: int) -> str:
    return f"first NaN/Inf at step {step} (marked)"


def no_match(selector: str) -> str:
    return f"no module matches '{selector}'"


def no_match_hint(close) -> str:
    close = list(close)
    if not close:
        return "run 'nnspec layers SPEC' to list the module paths"
    return f"did you mean {' or '.join(repr(c) for c in close)}? ('nnspec layers SPEC' lists them all)"


def no_params(kind: str, selector: str) -> str:
    return f"'{selector}' matches modules, but none has {kind}"


def bad_regex(pattern: str, why: str) -> str:
    return f"invalid regular expression /{pattern}/: {why}"


def unknown_type(name: str) -> str:
    return f"no module of type '{name}' in the model"


def index_out_of_range(layer: str, shape, index: str) -> str:
    return f"index {index} does not fit {layer} of shape {tuple(shape)}"


def needs_2d(mark: str, layer: str, shape) -> str:
    return f"'{mark}' draws 2-D tensors, and {layer} has shape {tuple(shape)}"


def needs_2d_hint(shape) -> str:
    first = ", ".join(["0"] * (len(shape) - 2))
    return f"add '| flatten' to get {shape[0]}×{_prod(shape[1:])}, or index it, e.g. '[{first}]'"


def needs_table(mark: str, columns) -> str:
    return f"'{mark}' needs a table with columns {_names(columns)}"


def unknown_column(mark: str, name: str, columns) -> str:
    return f"'{mark}': no column '{name}' in this view's data (columns: {_names(columns, 12)})"


def step_needs_tensors(step: str) -> str:
    return f"'{step}' works on tensors, and the data here is already a table"


def dim_out_of_range(step: str, dim: int, layer: str, shape) -> str:
    return f"'{step}(dim={dim})' does not fit {layer} of shape {tuple(shape)}"


def frozen_no_grad(layer: str) -> str:
    return f"{layer} got no gradient (it is not on the loss's path)"


def no_tensor_output(layer: str) -> str:
    return f"module {layer} returned no tensor"


def max_marks_over(n: int, limit: int) -> str:
    return f"max_marks={n} is above the limit of {limit}"


# --- notes shown under charts -------------------------------------------------
def note_block_mean(shape, out_shape) -> str:
    return f"{shape[0]}×{shape[1]} → {out_shape[0]}×{out_shape[1]}, block mean"


def note_nonfinite(nan: int, inf: int) -> str:
    return f"{nan} NaN and {inf} Inf not drawn (counted)"


def note_sampled(n: int, numel: int) -> str:
    return f"{n} of {numel} values sampled"


def note_truncated(n: int, total: int) -> str:
    return f"first {n} of {total} values (mark budget)"


def note_dropped_rows(n: int) -> str:
    return f"{n} rows with missing values dropped"


def note_first_output(layer: str, count: int) -> str:
    return f"{layer} returns {count} tensors; the first is shown"


def over_budget(mark: str, n: int, budget: int) -> str:
    return f"'{mark}' would draw {n} marks, over this view's budget of {budget}"


def needs_1d(mark: str, layer: str, shape) -> str:
    return f"'{mark}' draws one value per layer or 1-D tensors; {layer} has shape {tuple(shape)}"


def needs_1d_hint() -> str:
    return "reduce it first, e.g. '| mean', '| norm' or '| mean(dim=0)'"


def unknown_format(name: str, formats) -> str:
    return f"unknown format {name!r} (formats: {', '.join(formats)})"


def note_outside(n: int) -> str:
    return f"{n} values outside the range not drawn (counted)"


def note_block_means_1d(blocks: int, total: int) -> str:
    return f"{blocks} block means of {total} values"


def note_nonfinite_cells(n: int) -> str:
    return f"{n} cells hold NaN/Inf (drawn black)"


def note_nonfinite_values(n: int) -> str:
    return f"{n} NaN/Inf not drawn (counted)"


def note_whiskers() -> str:
    return "whiskers at min and max"


def internal_view_error(why: str) -> str:
    return f"internal error while drawing this view ({why}); please report it with the spec"


def cannot_write(path: str, why: str) -> str:
    return f"cannot write '{path}': {why}"


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def no_input_grad(dtype: str) -> str:
    return f"input_grads needs a floating-point input; this input is {dtype} (token ids have no gradient)"


def backward_failed(why: str) -> str:
    return f"the backward pass failed: {why}"


# --- views over steps (issue 4) -------------------------------------------------
def bad_step_range(lo, hi) -> str:
    return f"step range [{lo}:{hi}] is empty: the first step must be below the last"


def not_over_steps(kind: str) -> str:
    return f"'{kind}' cannot be recorded over steps: only weights, biases, params, grads, activations, inputs, output_grads and loss can"


def loss_needs_over_steps() -> str:
    return "'loss' is a series over training steps"


def loss_needs_over_steps_hint() -> str:
    return "write 'loss over steps' (or 'loss over steps[100:]')"


def update_ratio_needs_steps() -> str:
    return "update_ratio is ‖Δw‖/‖w‖ of one optimizer step: it needs weights over steps"


def update_ratio_needs_steps_hint() -> str:
    return "write e.g. 'weights of * over steps | update_ratio | line'"


def run_exists(directory: str) -> str:
    return f"run '{directory}' exists already and nnspec will not overwrite it"


def run_exists_hint() -> str:
    return "pick another run name (run=... or train: {run: ...}), or move the old run away"


def no_run(directory: str) -> str:
    return f"no run at '{directory}' (no run.sqlite there)"


def no_run_hint() -> str:
    return "runs are written by 'train:' in a spec (runs/<spec name>) or by nnspec.Recorder(spec, model, run=...)"


def bad_run(directory: str, why: str) -> str:
    return f"cannot read run '{directory}': {why}"


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


def ranks_disagree(lengths: list) -> str:
    return f"ranks recorded different amounts ({lengths} numbers): a recorded layer has a different shape per rank"


def fsdp_params() -> str:
    return (
        "under FSDP each rank holds a shard of every parameter: views over steps of weights, grads and "
        "update_ratio are not recorded there; activation views are (reduced across ranks)"
    )


def recorder_closed() -> str:
    return "the recorder is closed: create a new one for a new run"


def record_failed(step: int, why: str) -> str:
    return f"recording step {step} failed: {why}"


def not_recorded(step: int, module: str) -> str:
    return f"step {step}: module '{module}' did not run in the forward pass before rec.step({step})"


def not_recorded_hint() -> str:
    return "call rec.step(step, loss=...) once per step, after the forward and backward passes of that step"


def note_runs(names: list) -> str:
    return "views over steps: run " + ", ".join(names)


def series_marks(mark: str) -> str:
    return f"'{mark}' cannot draw a view over steps: use line (values, stats as bands), ridgeline (histograms) or table"


def ridgeline_needs_histograms() -> str:
    return "ridgeline draws one histogram per recorded step, and this view has no histograms over steps"


def ridgeline_hint() -> str:
    return "write e.g. 'weights of fc1 over steps | histogram(bins=30) | ridgeline'"


def note_ridges(shown: int, total: int) -> str:
    return f"{shown} of {total} recorded steps drawn (evenly spaced, first and last included)"


def note_nonfinite_steps(layer: str, bad: int, total: int, first: int) -> str:
    return f"{layer}: NaN/Inf at {bad} of {total} recorded steps from step {first} (counted in the table, not drawn)"


# --- templating (issue 5) ----------------------------------------------------------
def extends_not_path(value) -> str:
    return f"extends: expected a path to a spec file, got {value!r}"


def extends_cycle(chain: list) -> str:
    import os

    return "extends makes a cycle: " + " → ".join(os.path.relpath(p) if os.path.isabs(p) else p for p in chain)


def vars_not_mapping() -> str:
    return "vars: expected a mapping of names to default values"


def values_file_not_mapping(path: str) -> str:
    return f"'{path}' (-f): expected a mapping of var names to values"


def bad_set(text: str) -> str:
    return f"--set '{text}': expected name=value"


def bad_set_hint() -> str:
    return "e.g. --set layer=fc2 or --set lr=0.01 (the value is read as YAML)"


def unknown_var(name: str, known: list) -> str:
    return f"unknown variable '${{{name}}}'" + (f" (vars: {', '.join(known)})" if known else " (the spec has no vars)")


def unknown_var_hint(name: str) -> str:
    return f"define it under 'vars:', pass --set {name}=..., or write ${{{name}:-default}}"


def bad_repeat() -> str:
    return "repeat: expected one variable and a list of values or a selector, e.g. {layer: [fc1, fc2]}"


def bad_repeat_hint() -> str:
    return 'write repeat: {layer: [fc1, fc2]} or repeat: {layer: "type(Conv2d)"}, then use ${layer} in the view'


# --- checks (expect:) ----------------------------------------------------------------
def check_has_mark(mark: str) -> str:
    return f"a check compares numbers and draws nothing: drop '| {mark}'"


def comparison_outside_expect() -> str:
    return "a comparison ('< 0.5') belongs in an expect: check, not in a view"


def comparison_outside_expect_hint() -> str:
    return "move this line under 'expect:', or drop the comparison to draw the values"


def check_needs_comparison() -> str:
    return "a check needs a comparison at the end, e.g. '| dead_fraction < 0.5'"


def check_needs_values(kind: str) -> str:
    return f"a check compares one value per layer (or per layer and step), and this query gives {kind}"


def check_needs_values_hint() -> str:
    return "end it with a reduction: | mean, | max, | norm, | dead_fraction, | nan_count …"


# --- nnspec init -----------------------------------------------------------------------
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


def module_not_called(path: str) -> str:
    return f"{path} was not called in this forward pass (a branch not taken?)"


def view_needs_query() -> str:
    return "this view has no query"


def view_needs_query_hint() -> str:
    return "add 'query: ...', or give it the id of a view in the spec it extends so that it merges into that view"
