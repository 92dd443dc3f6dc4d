"""Messages of training, recording and reading runs: every one a function, kept beside the stage that raises it.

Tests assert against these functions, not against copied strings.
"""

from __future__ import annotations


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
