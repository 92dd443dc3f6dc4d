"""A run's hyperparameters: what made it, stored with it (meta key ``hparams``) so runs
drawn side by side can be compared honestly.

One flat JSON object, keys sorted, values JSON (numbers, strings, booleans, lists):

    {"batch": 8, "optimizer": "Adam", "optimizer.betas": [0.9, 0.999], "optimizer.lr": 0.01,
     "optimizer.weight_decay": 0, ..., "seed": 0, "steps": 30, "vars.hidden": 6, "lr": 0.01}

``vars.*``: the spec's variables as resolved (spec < extended files < -f < --set);
``optimizer*``: the optimizer's class and every argument of its defaults (what the
constructor was given, PyTorch's defaults included); ``steps``, ``batch``, ``seed``:
``train:``'s; anything else: what the user told the Recorder (``hparams={...}``).
"""

from __future__ import annotations

import json
import math

MAX_JSON = 60_000  # below the run store's limit on a meta value (64 KiB)


def flatten(prefix: str, value, out: dict) -> dict:
    """``{"a": {"b": 1}}`` under ``vars`` → ``{"vars.a.b": 1}``; lists stay lists."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = plain(value)
    return out


def plain(value):
    """A JSON value for ``value`` (tuples become lists, tensors numbers, the rest their text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    item = getattr(value, "item", None)  # a 0-d tensor or numpy scalar (a tensor lr)
    if callable(item):
        try:
            return plain(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def optimizer_hparams(opt) -> dict:
    """``optimizer``: the class name; ``optimizer.<arg>``: each of its defaults (the first
    param group's value where the groups agree on one, which is what a user set)."""
    out: dict = {"optimizer": type(opt).__name__}
    defaults = dict(getattr(opt, "defaults", {}) or {})
    groups = list(getattr(opt, "param_groups", []) or [])
    for k in sorted(defaults):
        values = [g.get(k, defaults[k]) for g in groups] or [defaults[k]]
        first = plain(values[0])
        same = all(plain(v) == first for v in values[1:])
        out[f"optimizer.{k}"] = first if same else [plain(v) for v in values]
    return out


def resolved_vars(source, vars=None, values_files=()) -> dict:
    """The spec's variables after templating (spec < extended files < -f files < --set).

    The template consumes its variables while it resolves; this runs its first steps
    again (extends, x-*, vars) to keep them. A spec given as a Spec keeps none: ``{}``."""
    import os

    from nnspec.paths import check_inside
    from nnspec.spec import template
    from nnspec.spec.load import Spec
    from nnspec.spec.yamlpos import Located, load, read

    if isinstance(source, Spec) or source is None:
        return {}
    if isinstance(source, dict):
        located = Located(data=source, file="<dict>")
        base_dir = os.getcwd()
    else:
        path = os.fspath(source)
        located = load(read(check_inside(path, None, "spec file")), path)
        base_dir = os.path.dirname(os.path.abspath(path))
    return template.variables(located, template.Options(tuple(values_files), dict(vars or {})), base_dir)


def encode(hparams: dict) -> str:
    """The meta value: sorted, compact JSON; what does not fit the store's limit is cut to its scalars."""
    flat = {str(k): plain(v) for k, v in hparams.items()}
    text = json.dumps(flat, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text) > MAX_JSON:
        flat = {k: v for k, v in flat.items() if not isinstance(v, (list, dict)) and len(str(v)) < 200}
        text = json.dumps(flat, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text) > MAX_JSON:
        text = "{}"
    return text


def decode(text: str | None) -> dict:
    """A run's stored hyperparameters (``{}`` for a run that has none, an old run too).

    The file may come from anywhere: anything but an object of scalars and lists of
    scalars is dropped or shown as its (shortened) text, never an error."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k)[:200]: _shown(v) for k, v in list(value.items())[:MAX_KEYS]}


MAX_KEYS = 1000


def _shown(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v[:1000] if isinstance(v, str) else v
    if isinstance(v, list) and len(v) <= 100 and all(x is None or isinstance(x, (bool, int, float, str)) for x in v):
        return v
    text = json.dumps(v)
    return text if len(text) <= 200 else text[:197] + "..."
