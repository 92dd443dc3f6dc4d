"""Build the user's model from ``model:`` in a spec: import, seed, checkpoint, device."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from nnspec.backends import backend_for
from nnspec.backends.base import own_params
from nnspec.backends.files import open_file
from nnspec.errors import ModelError, SpecError
from nnspec.inputs import messages
from nnspec.paths import check_inside, check_regular, resolve_path
from nnspec.spec.load import ModelSpec, Spec


def import_callable(ref: str, base_dir: str, span=None):
    """``pkg.module:callable`` or ``path/file.py:callable`` (relative to the spec's folder, then cwd)."""
    mod_ref, _, attr = ref.rpartition(":")
    try:
        if mod_ref.endswith(".py"):
            candidates = [os.path.join(base_dir, mod_ref), os.path.abspath(mod_ref)]
            path = next((p for p in candidates if os.path.isfile(p)), None)
            if path is None:
                raise FileNotFoundError(f"no file {mod_ref} (looked in {base_dir} and {os.getcwd()})")
            check_inside(path, span, "factory file")  # under --root, a factory's file too
            name = "nnspec_user_" + os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            for folder in (os.getcwd(), base_dir):  # the user's own packages, as `python -m` would see them
                if folder not in sys.path:
                    sys.path.append(folder)
            module = importlib.import_module(mod_ref)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    except SpecError:
        raise
    except Exception as e:  # the user's module may raise anything while importing
        raise SpecError(messages.bad_factory(ref, f"{type(e).__name__}: {e}"), span) from e


def _keras_without_backend(e: Exception) -> bool:
    """A factory that imported Keras, whose backend's framework is not installed."""
    name = getattr(e, "name", None) or ""
    return (
        isinstance(e, ModuleNotFoundError)
        and name.split(".")[0] in ("tensorflow", "jax", "jaxlib")
        and ("keras" in sys.modules or any(k.startswith("keras.") for k in sys.modules))
    )


def resolve_device(name: str, span=None):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError(messages.no_cuda(), span)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_model(spec: Spec):
    """The model the spec names, seeded, with its checkpoint, on its device."""
    import torch

    m: ModelSpec = spec.model
    if not m.factory and not m.file:
        raise SpecError(messages.no_model(), m.span, messages.no_model_hint())
    model = None
    if m.factory:
        factory = import_callable(m.factory, spec.base_dir, m.factory_span)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(m.seed)
            try:
                model = factory(*m.args, **m.kwargs)
            except Exception as e:
                if _keras_without_backend(e):  # Keras imported with no KERAS_BACKEND and no TensorFlow
                    from nnspec.backends.keras import messages as keras_messages

                    raise ModelError(
                        keras_messages.no_keras_backend(str(e)), m.factory_span, keras_messages.no_keras_backend_hint()
                    ) from None
                raise ModelError(messages.factory_failed(m.factory, f"{type(e).__name__}: {e}"), m.factory_span) from e
    if m.file:
        path = resolve_path(m.file, spec.base_dir, cwd_fallback=True, span=m.file_span, what="model file")
        try:
            model = open_file(path, model, m.file)
        except ModelError as e:
            raise ModelError(e.message, e.span or m.file_span, e.hint) from e
    if backend_for(model) is None:
        raise ModelError(
            messages.not_a_module(m.factory or m.file or "", type(model).__name__),
            m.file_span if m.file else m.factory_span,
        )
    if not isinstance(model, torch.nn.Module):
        return model  # another framework's model (or a file's): it stays where its framework put it
    if m.checkpoint:
        path = resolve_path(m.checkpoint, spec.base_dir, cwd_fallback=True, span=m.checkpoint_span, what="checkpoint")
        load_checkpoint(model, path, m.checkpoint_span, m.checkpoint)
    return model.to(resolve_device(m.device, m.span))


def load_checkpoint(model, path: str, span=None, shown: str | None = None) -> None:
    """Load a state_dict (weights_only); a misfit names the parameters concerned."""
    import torch

    shown = shown or path
    check_regular(path, None, span, "checkpoint", missing_ok=True)  # a pipe or /dev/zero never finishes loading
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(messages.checkpoint_unreadable(shown, f"{type(e).__name__}: {e}"), span) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(messages.checkpoint_unreadable(shown, "it holds no state_dict"), span)
    be = backend_for(model)
    own = be.state()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in own.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise ModelError(messages.checkpoint_mismatch(shown, missing, unexpected, shapes), span)
    be.load_state(state)


def layer_rows(model) -> list[dict]:
    """One row per module: path, type, its own parameters' shapes and count. A shared
    (tied) tensor counts in the row of its first name only; the other rows that hold it
    say whose it is (GPT-2's ``lm_head``: ``weight (V, D) = transformer.wte.weight``), so
    the counts add up to the total."""
    be = backend_for(model)
    rows = []
    for m in be.modules():
        own = own_params(be, m.path)
        parts, count, shared = [], 0, []
        for n, p in own:
            name = f"{m.path}.{n}" if m.path else n
            if name == p.path:
                count += p.numel
                parts.append(f"{n} {p.shape}")
            else:
                shared.append((name, p.path))
                parts.append(f"{n} {p.shape} = {p.path}")
        rows.append(
            {
                "path": m.path or "(root)",
                "type": m.type,
                "params": ", ".join(parts),
                "count": count,
                "leaf": m.leaf,
                "shared": shared,  # (this module's name for a tensor, the name it is counted under)
            }
        )
    return rows


def layers_text(model) -> str:
    """The ``nnspec layers`` table; a shared parameter is counted once, under its first name."""
    rows = layer_rows(model)
    w_path = max(len(r["path"]) for r in rows)
    w_type = max(len(r["type"]) for r in rows)
    lines = [f"{'path':<{w_path}}  {'type':<{w_type}}  {'params':>10}  shapes"]
    for r in rows:
        lines.append(f"{r['path']:<{w_path}}  {r['type']:<{w_type}}  {r['count']:>10,}  {r['params']}".rstrip())
    total = backend_for(model).size()  # each shared tensor once
    lines.append(f"{'total':<{w_path}}  {'':<{w_type}}  {total:>10,}".rstrip())
    if any(r["shared"] for r in rows):
        lines.append("(= NAME: a tensor shared with NAME, counted there)")
    return "\n".join(lines)
