"""Attention weights, per head, of any attention module: (batch, head, query, key).

Attention is computed in one of three ways, and each is read where it happens:

* ``nn.MultiheadAttention``: ``nn.TransformerEncoderLayer`` calls it with
  ``need_weights=False`` and, in eval mode, may skip it entirely through a
  fused fast path. The fast path is switched off and the module's ``forward``
  is wrapped to ask for per-head weights; the caller still gets what it asked
  for.
* ``F.scaled_dot_product_attention`` (Hugging Face ``attn_implementation=
  "sdpa"``, timm's fused ``Attention``): the fused kernel never materialises
  the weights, so a ``TorchFunctionMode`` sees each call and computes them
  from the call's own arguments: ``softmax(q kᵀ · scale + mask)``, the scale
  ``1/√E`` unless given, ``is_causal`` the lower triangle, a bool mask the
  allowed positions, a float mask added, fewer key/value heads repeated
  (grouped-query attention), and a row with no allowed key all zeros.
* eager attention (Hugging Face ``"eager"``, timm unfused, most hand-written
  attention): the mode keeps the output of the first ``softmax`` over the last
  dimension of a 4-D tensor, (batch, head, query, key).

A call counts for the innermost selected module running when it is made
(forward hooks keep the stack), and only the first one per module is kept,
detached, in float32 (float64 stays float64). Everything is undone on exit.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

SDPA = (F.scaled_dot_product_attention,)
SOFTMAX = (F.softmax, torch.softmax, torch.Tensor.softmax, torch.special.softmax)
NAMES = ("attention", "attn")  # a class whose name holds one of these (any case) computes attention
HEAD_ATTRS = ("num_heads", "num_attention_heads", "n_head", "n_heads")


@contextmanager
def recording(model, paths, store: dict):
    """While active, ``store[path]`` receives the first call's weights, (B, H, L, S)."""
    if not paths:
        yield
        return
    fastpath = torch.backends.mha.get_fastpath_enabled()
    patched = []
    stack: list[str] = []
    with ExitStack() as undo:
        torch.backends.mha.set_fastpath_enabled(False)
        undo.callback(torch.backends.mha.set_fastpath_enabled, fastpath)
        for path in paths:
            module = model.get_submodule(path)
            if isinstance(module, torch.nn.MultiheadAttention):
                had = "forward" in module.__dict__
                patched.append((module, had, module.__dict__.get("forward")))
                module.forward = _wrap(module.forward, path, store)  # type: ignore[method-assign]
            undo.callback(module.register_forward_pre_hook(_enter(stack, path)).remove)
            undo.callback(module.register_forward_hook(_leave(stack, path), always_call=True).remove)
        undo.callback(_unpatch, patched)
        undo.enter_context(_Mode(stack, store))
        yield


def _unpatch(patched) -> None:
    for module, had, old in patched:
        if had:
            module.forward = old
        else:
            del module.forward


def _enter(stack: list[str], path: str):
    def hook(module, args):
        stack.append(path)

    return hook


def _leave(stack: list[str], path: str):
    def hook(module, args, output):
        if stack and stack[-1] == path:
            stack.pop()

    return hook


def _wrap(forward, path: str, store: dict):
    def wrapped(*args, need_weights=True, average_attn_weights=True, **kwargs):
        out, weights = forward(*args, need_weights=True, average_attn_weights=False, **kwargs)
        if path not in store and weights is not None:
            w = weights if weights.dim() == 4 else weights.unsqueeze(0)  # unbatched input: (H, L, S)
            store[path] = _keep(w)
        if not need_weights:
            return out, None
        return out, (weights.mean(dim=-3) if average_attn_weights else weights)

    return wrapped


class _Mode(TorchFunctionMode):
    """Sees every torch function call; keeps the attention weights of the innermost
    selected module that has none yet."""

    def __init__(self, stack: list[str], store: dict):
        super().__init__()
        self.stack = stack
        self.store = store

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.stack or self.stack[-1] in self.store:
            return out
        if func in SDPA:
            w = sdpa_weights(*args, **kwargs)
        elif func in SOFTMAX:
            w = _softmax_weights(args, kwargs, out)
        else:
            return out
        if w is not None:
            self.store[self.stack[-1]] = w
        return out


def _keep(w: torch.Tensor) -> torch.Tensor:
    """A detached float copy, outside every torch function mode (a trace must not see it)."""
    with torch._C.DisableTorchFunction():
        return w.detach().to(torch.promote_types(w.dtype, torch.float32), copy=True)


def _softmax_weights(args: tuple, kwargs: dict, out) -> torch.Tensor | None:
    """The output of a softmax over the last dimension of a 4-D tensor, else None."""
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or not isinstance(dim, int):
        return None
    if dim % 4 != 3:
        return None
    return _keep(out)


def sdpa_weights(
    query,
    key,
    value=None,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
    **_,
) -> torch.Tensor | None:
    """The weights ``F.scaled_dot_product_attention`` applies to ``value`` (before
    dropout), as (B, H, L, S); None for inputs it cannot read (more than 4-D)."""
    if not (isinstance(query, torch.Tensor) and isinstance(key, torch.Tensor)) or not 2 <= query.dim() <= 4:
        return None
    with torch._C.DisableTorchFunction(), torch.no_grad():
        dtype = torch.promote_types(query.dtype, torch.float32)
        q, k = query.detach().to(dtype), key.detach().to(dtype)
        n, s = q.shape[-2], k.shape[-2]
        if q.dim() >= 3 and k.dim() >= 3 and k.shape[-3] != q.shape[-3] and q.shape[-3] % k.shape[-3] == 0:
            k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)  # grouped-query attention
        scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
        if is_causal:
            allowed = torch.ones(n, s, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~allowed, -math.inf)
        if attn_mask is not None:
            mask = attn_mask.detach()
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, -math.inf)
            else:
                scores = scores + mask.to(dtype)
        dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # no key allowed: zeros, not NaN
        w = torch.where(dead, 0.0, torch.softmax(scores, dim=-1))
        while w.dim() < 4:
            w = w.unsqueeze(0) if w.dim() == 2 else w.unsqueeze(1)  # (L, S) → (1, L, S) → (B, 1, L, S)
        return w


# -- which modules, and their shapes -------------------------------------------------------
def _named_attention(module: torch.nn.Module) -> bool:
    if isinstance(module, torch.nn.MultiheadAttention):
        return True
    names = (c.__name__.lower() for c in type(module).__mro__ if c not in (torch.nn.Module, object))
    return any(word in name for name in names for word in NAMES)


def is_attention(module: torch.nn.Module) -> bool:
    """Whether ``attention of`` may select this module: ``nn.MultiheadAttention``, or the
    innermost module whose class name (or a base class's) holds "Attention" or "Attn"
    (BERT's ``BertSelfAttention`` inside ``BertAttention``; T5's ``T5Attention`` inside
    ``T5LayerSelfAttention``)."""
    if not _named_attention(module):
        return False
    return isinstance(module, torch.nn.MultiheadAttention) or not any(
        _named_attention(m) for m in module.modules() if m is not module
    )


def _heads(module: torch.nn.Module) -> int | None:
    for holder in (module, getattr(module, "config", None)):
        for name in HEAD_ATTRS:
            v = getattr(holder, name, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def probe_shape(module: torch.nn.Module, args, kwargs, output) -> tuple | None:
    """The (B, H, L, S) shape of the weights a call computes, for EXPLAIN; None if unknown."""
    out = output[0] if isinstance(output, tuple) and output else output
    if isinstance(module, torch.nn.MultiheadAttention):
        if not isinstance(out, torch.Tensor) or out.dim() != 3:
            return None
        b, n = (out.shape[0], out.shape[1]) if module.batch_first else (out.shape[1], out.shape[0])
        return (b, module.num_heads, n, n)
    if not is_attention(module):
        return None
    heads = _heads(module)
    if heads is None or not isinstance(out, torch.Tensor) or out.dim() != 3:
        return None
    b, n = out.shape[0], out.shape[1]
    s = n
    for name in ("key_value_states", "encoder_hidden_states"):  # cross-attention: keys from elsewhere
        kv = (kwargs or {}).get(name)
        if isinstance(kv, torch.Tensor) and kv.dim() == 3:
            s = kv.shape[1]
    return (b, heads, n, s)
