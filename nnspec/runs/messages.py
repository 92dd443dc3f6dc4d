"""Messages of training, recording and reading runs: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations

import os


def train_needs_loss() -> str:
    return "train: needs a loss to minimise, and the spec has no 'loss'"


def train_step_failed(step: int, why: str) -> str:
    return f"training failed at step {step}: {why}"


def bad_optimizer(name: str, why: str) -> str:
    return f"optimizer {name}: {why}"


def note_trained(steps: int, name: str, lr, first: float, last: float) -> str:
    return f"trained {steps} steps ({name}, lr {lr:g}): loss {first:.4g} → {last:.4g}"


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


def bad_run_hint() -> str:
    return "a run.sqlite is written only by nnspec: record the run again, or remove the damaged file"


def run_not_a_file(what: str) -> str:
    return f"run.sqlite is {what}"


def run_too_big(size: int, cap: int) -> str:
    return f"run.sqlite is {size:,} bytes, more than nnspec reads ({cap:,}; set NNSPEC_MAX_RUN_BYTES to allow more)"


def run_too_slow(seconds: float) -> str:
    return f"reading it took longer than {seconds:g} s and was stopped"


def run_damaged(why: str) -> str:
    return f"the file is damaged or not a run ({why})"


def run_schema(what: str) -> str:
    return f"not the schema of a run: {what}"


def run_format(found, known) -> str:
    return f"unknown run format {found!r} (this nnspec reads formats {', '.join(known)})"


def run_bad_row(table: str, where) -> str:
    return f"a malformed row in '{table}' ({where})"


def run_checksum(table: str, where: str) -> str:
    return f"the row of {where} in '{table}' does not match its checksum: the file is damaged"


def run_record_length(step, reduce: str, n: int) -> str:
    return f"the record of step {step} holds {n} numbers, not what '{reduce}' records: the file is damaged"


def run_too_many(table: str, cap: int) -> str:
    return f"more than {cap:,} rows in '{table}'"


def run_locked(directory: str, holder: str | None) -> str:
    who = f" ({holder})" if holder else ""
    return f"run '{directory}' is being written by another process{who}"


def run_locked_hint() -> str:
    return "wait until it finishes, or write this run under another name (run=... or train: {run: ...})"


def note_unfinished(run: str, last: int | None, planned: int | None) -> str:
    if last is None:
        return f"run {run} is unfinished: it recorded no step yet (stopped, or still being written)"
    of = f" of {planned:,}" if planned is not None else ""
    return f"run {run} is unfinished: stopped at step {last:,}{of} (killed, or still being written)"


def note_not_run(run: str, modules: dict) -> str:
    listed = ", ".join(f"'{m}' (from step {s:,})" for m, s in list(modules.items())[:5])
    more = f" and {len(modules) - 5} more" if len(modules) > 5 else ""
    return (
        f"run {run}: {listed}{more} did not run in the recorded training steps (a branch not taken, "
        "or a fused path such as Keras' attention in training): no records there"
    )


def note_draws_model(runs: list) -> str:
    return f"draws the model the spec builds, not the recorded run{'s' if len(runs) > 1 else ''} ({', '.join(runs)})"


def note_unverified(run: str) -> str:
    return f"run {run} was written by an older nnspec (format 1, no checksums): its numbers are not verified"


def ranks_disagree(lengths: list) -> str:
    return f"ranks recorded different amounts ({lengths} numbers): a recorded layer has a different shape per rank"


def fsdp_params() -> str:
    return (
        "under FSDP1 (FullyShardedDataParallel) each rank holds a flat shard of its parameters: views over steps "
        "of weights, grads and update_ratio are recorded only with FSDP2 (torch.distributed.fsdp.fully_shard); "
        "activation views are (reduced across ranks)"
    )


def recorder_closed() -> str:
    return "the recorder is closed: create a new one for a new run"


def record_failed(step: int, why: str) -> str:
    return f"recording step {step} failed: {why}"


def not_recorded(step: int, module: str) -> str:
    return f"step {step}: module '{module}' did not run in the forward pass before rec.step({step})"


def not_recorded_hint() -> str:
    return "call rec.step(step, loss=...) once per step, after the forward and backward passes of that step"


def fsdp_index(param: str, index: str) -> str:
    return (
        f"{param}{index}: an index into a parameter sharded by fully_shard is not recorded: each rank holds "
        "only some rows and nnspec never gathers the whole tensor"
    )


def fsdp_not_dtensor(param: str) -> str:
    return f"{param} is not sharded by fully_shard (not a DTensor) in a sharded model: its ranks' copies may differ"


def fsdp_placement(param: str, placements: str) -> str:
    return (
        f"{param} is placed {placements}: only a Shard placement over one mesh of every rank is reduced exactly "
        "(replicas would count twice; dead_fraction needs Shard(0))"
    )


def fsdp_hint() -> str:
    return "record the whole parameter (drop the index), or record it from a DDP or single-process run"


def bad_journal(found: str, known) -> str:
    return f"NNSPEC_RUN_JOURNAL={found!r}: expected one of {', '.join(known)}"


def run_interrupted(why: str) -> str:
    return (
        f"a writer was killed while committing a step and left run.sqlite-journal; "
        f"nnspec could not roll it back ({why}): open the run once with write access"
    )


def run_bins(step, reduce: str) -> str:
    return f"the histogram bins of step {step} are not 0, 1, 2, … as '{reduce}' records: the file is damaged"


def not_a_series(name: str, known) -> str:
    listed = ", ".join(list(known)[:5]) + (", …" if len(known) > 5 else "")
    return f"the run records no series matching {name!r} (it records {listed or 'none'})"


def run_starting(directory: str) -> str:
    return f"run '{directory}' is being created: it holds nothing yet"


# -- TensorBoard logs (runs/tensorboard.py) -------------------------------------------------
def needs_tensorboard() -> str:
    return "reading or writing TensorBoard logs needs the 'tensorboard' package"


def needs_tensorboard_hint() -> str:
    return "pip install 'nnspec[tensorboard]' (TensorFlow is not needed)"


def bad_log(directory: str, why: str) -> str:
    return f"cannot read TensorBoard logs '{directory}': {why}"


def no_tag(run: str, wanted: list[str], scalars: list[str], histograms: list[str]) -> str:
    def listing(tags: list[str]) -> str:
        shown = ", ".join(f"'{t}'" for t in tags[:8])
        return (shown + (f" and {len(tags) - 8} more" if len(tags) > 8 else "")) or "none"

    return (
        f"TensorBoard run '{run}' has no tag {' or '.join(repr(w) for w in wanted[:4])}; "
        f"its scalar tags: {listing(scalars)}; its histogram tags: {listing(histograms)}"
    )


def no_tag_hint() -> str:
    return (
        "nnspec reads the tag KIND/TARGET/REDUCE (grad/fc1.weight/norm), 'loss' or 'train/loss' for the loss, "
        "and histograms tagged KIND/TARGET or a parameter's name; docs/guide.md §9, TensorBoard logs"
    )


def uneven_buckets(run: str, tag: str, step: int) -> str:
    return (
        f"TensorBoard run '{run}': histogram '{tag}' at step {step} has buckets of unequal widths "
        "(TensorFlow's exponential buckets); nnspec draws equal bins and does not re-bin counts"
    )


def uneven_buckets_hint() -> str:
    return "log it with add_histogram(..., bins='auto') or an integer number of bins"


def several_losses(run: str, tags: list[str]) -> str:
    return f"TensorBoard run '{run}' has several tags that could be the loss: {', '.join(tags)}"


def several_losses_hint() -> str:
    return "nnspec reads 'loss', else 'train/loss': log the loss to draw under one of those tags"


def note_buckets(run: str, tag: str, buckets: list[int], bins: int) -> str:
    n = f"{buckets[0]}" if len(buckets) == 1 else f"{buckets[0]} to {buckets[-1]}"
    return f"run '{run}': histogram '{tag}' is drawn with the {n} buckets TensorBoard stored, not bins={bins}"


def not_event_files(names: list[str]) -> str:
    return f"no record could be read from {', '.join(names[:3])}: damaged, or not TensorBoard event files"


def note_unread(run: str, name: str, unread: int | None, size: int) -> str:
    where = (
        f"the last {unread:,} of {size:,} bytes of {name}"
        if unread is not None
        else (f"{name} past a record whose checksum fails")
    )
    return f"run '{run}': {where} could not be read (a damaged record, or one still being written)"


def export_exists(directory: str) -> str:
    return f"'{directory}' holds TensorBoard event files already: an export never adds to or replaces them"


def export_exists_hint() -> str:
    return "export into a new directory (TensorBoard shows each subdirectory of its --logdir as a run)"


def not_a_directory(directory: str) -> str:
    return f"'{directory}' is not a directory"


def logdir_of_runs(directory: str, runs: list[str]) -> str:
    shown = ", ".join(runs[:6]) + (f" and {len(runs) - 6} more" if len(runs) > 6 else "")
    return f"'{directory}' is a TensorBoard log directory of runs ({shown}), not one run"


def logdir_of_runs_hint(directory: str, first: str) -> str:
    return f"name each run with its own --run, e.g. --run {os.path.join(directory, first)}"


def note_hparams_unread(run: str, where: str, why: str) -> str:
    return f"run '{run}': the hyperparameters in {where} could not be read ({why}); the Runs table shows none"


def export_failed(run: str, directory: str, where: str, why: str) -> str:
    return f"exporting run '{run}' to '{directory}' failed at {where}: {why}; nothing was written to '{directory}'"


def export_failed_hint() -> str:
    return "fix the cause (disk space, permissions) and export again: an export is all or nothing"
