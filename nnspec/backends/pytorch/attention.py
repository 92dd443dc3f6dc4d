"""Attention weights of ``nn.MultiheadAttention``, per head.

``nn.TransformerEncoderLayer`` calls its attention with ``need_weights=False``
and, in eval mode, may skip it entirely through a fused fast path. For the
one forward pass a render makes, the fast path is switched off and each
selected module's ``forward`` is wrapped to ask for per-head weights; the
caller still gets what it asked for. Both are undone afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def recording(model, paths, store: dict):
    """While active, ``store[path]`` receives the first call's weights, (B, H, L, S)."""
    if not paths:
        yield
        return
    fastpath = torch.backends.mha.get_fastpath_enabled()
    patched = []
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        for path in paths:
            module = model.get_submodule(path)
            had = "forward" in module.__dict__
            patched.append((module, had, module.__dict__.get("forward")))
            module.forward = _wrap(module, module.forward, path, store)
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for module, had, old in patched:
            if had:
                module.forward = old
            else:
                del module.forward


def _wrap(module, forward, path: str, store: dict):
    def wrapped(*args, need_weights=True, average_attn_weights=True, **kwargs):
        out, weights = forward(*args, need_weights=True, average_attn_weights=False, **kwargs)
        if path not in store and weights is not None:
            w = weights if weights.dim() == 4 else weights.unsqueeze(0)  # unbatched input: (H, L, S)
            store[path] = w.detach()
        if not need_weights:
            return out, None
        return out, (weights.mean(dim=-3) if average_attn_weights else weights)

    return wrapped


def is_attention(module: torch.nn.Module) -> bool:
    """Whether ``attention of`` can read this module's attention weights."""
    return isinstance(module, torch.nn.MultiheadAttention)


def probe_shape(module: torch.nn.Module, args, kwargs, output) -> tuple | None:
    """The (B, H, L, S) shape of the weights a call computes, for EXPLAIN; None if unknown."""
    if not isinstance(module, torch.nn.MultiheadAttention):
        return None
    out = output[0] if isinstance(output, tuple) else output
    if not isinstance(out, torch.Tensor) or out.dim() != 3:
        return None
    b, n = (out.shape[0], out.shape[1]) if module.batch_first else (out.shape[1], out.shape[0])
    return (b, module.num_heads, n, n)
