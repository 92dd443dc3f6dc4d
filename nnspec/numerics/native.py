"""nnspec's own CPU kernels (``kernels.c``): a stats vector's moments, min and max in
one read of a float32 tensor, and histogram counts in one more.

The C source ships with the package and is compiled on first use with the
machine's C compiler (``$CC``, else ``cc``; about 0.4 s, once per machine and
source version) into ``$NNSPEC_CACHE`` (default ``~/.cache/nnspec``), written
under a temporary name and renamed, so concurrent processes never load a
half-written library. Every later process loads the cached library in about a
millisecond. Without a compiler, or with ``NNSPEC_NATIVE=0``, ``library()`` is None
and the torch reductions run instead, with the same results up to float32
summation order: the kernels make the same float operations (float32 partial
sums carried in float64; bins from ``(x - lo) * scale`` in float32, without FMA).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

FLAGS = ("-O3", "-fPIC", "-shared", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off")
_C = ctypes
_T = TypeVar("_T")


def cache_dir() -> Path:
    base = os.environ.get("NNSPEC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nnspec"
    )
    return Path(base)


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (no compiler, a failed build, ``NNSPEC_NATIVE=0``)."""
    if os.environ.get("NNSPEC_NATIVE", "1") == "0":
        return None
    source = resources.files("nnspec.numerics").joinpath("kernels.c").read_bytes()
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + platform.machine().encode() + compiler.encode())
    path = cache_dir() / f"kernels-{key.hexdigest()[:16]}.so"
    try:
        if not path.exists():
            _build(compiler, source, path)
        return _declare(ctypes.CDLL(str(path)))
    except (OSError, subprocess.SubprocessError):
        return None


def _build(compiler: str, source: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        src = Path(work) / "kernels.c"
        src.write_bytes(source)
        out = Path(work) / path.name
        subprocess.run([compiler, *FLAGS, "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
        os.replace(out, path)  # atomic: another process sees no library or a whole one


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, f32 = _C.c_void_p, _C.c_int64, _C.c_float
    lib.nnspec_moments_f32.argtypes = [p, i64, f32, p]
    lib.nnspec_moments_f32_exact.argtypes = [p, i64, f32, p]
    lib.nnspec_minmax_f32.argtypes = [p, i64, p]
    lib.nnspec_bins_f32.argtypes = [p, i64, f32, f32, i64, _C.c_int, f32, p, p]
    for fn in (lib.nnspec_moments_f32, lib.nnspec_moments_f32_exact, lib.nnspec_minmax_f32, lib.nnspec_bins_f32):
        fn.restype = None
    return lib


def usable(t: torch.Tensor) -> bool:
    """A contiguous float32 CPU tensor, and the kernels are there."""
    return t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() and library() is not None


EXACT_MAX = 1 << 16  # elements: up to this, moments are summed in double (float64-exact, as NumPy's)


def moments(t: torch.Tensor) -> tuple[float, ...]:
    """(sum and sum of squares of ``t - shift``, sum of |t|, zeros, min, max, shift) of
    a non-empty ``t``; the shift is its first value, so that the variance does not
    cancel when |mean| ≫ std. A non-finite sum: the tensor holds NaN or Inf. Up to
    EXACT_MAX elements every sum is carried in double, larger ones in float32 blocks."""
    shift = float(t[0])
    lib = library()
    kernel = lib.nnspec_moments_f32_exact if t.numel() <= EXACT_MAX else lib.nnspec_moments_f32  # type: ignore[union-attr]

    def part(lo: int, hi: int) -> tuple[float, ...]:
        out = (_C.c_double * 6)()
        kernel(t.data_ptr() + 4 * lo, hi - lo, shift, out)
        return tuple(out)

    parts = _each(part, t.numel())
    s, ss, ab, z = (math.fsum(p[k] for p in parts) for k in range(4))
    mn, mx = _ends([p[4] for p in parts], [p[5] for p in parts])
    if not math.isfinite(shift):
        return math.nan, math.nan, ab, z, mn, mx, 0.0
    return s, ss, ab, z, mn, mx, shift


def minmax(t: torch.Tensor) -> tuple[float, float]:
    """(min, max) of an all-finite ``t``; a NaN or Inf gives a non-finite end, as aminmax does."""
    lib = library()

    def part(lo: int, hi: int) -> tuple[float, float]:
        out = (_C.c_double * 2)()
        lib.nnspec_minmax_f32(t.data_ptr() + 4 * lo, hi - lo, out)  # type: ignore[union-attr]
        return out[0], out[1]

    parts = _each(part, t.numel())
    return _ends([p[0] for p in parts], [p[1] for p in parts])


def bins(t: torch.Tensor, lo: float, scale: float, n_bins: int, hi: float | None) -> tuple[np.ndarray, int, int]:
    """(counts with a slot ``n_bins`` for values at hi, below, above) of an all-finite
    ``t``; ``hi`` given: a range, values clamped into the end bins and counted outside."""
    lib = library()

    def part(a: int, b: int) -> tuple[np.ndarray, int, int]:
        lanes = np.zeros(4 * (n_bins + 1), dtype=np.int64)
        outside = (_C.c_int64 * 2)()
        lib.nnspec_bins_f32(  # type: ignore[union-attr]
            t.data_ptr() + 4 * a, b - a, lo, scale, n_bins, int(hi is not None), 0.0 if hi is None else hi,
            lanes.ctypes.data, outside,
        )  # fmt: skip
        return lanes.reshape(4, n_bins + 1).sum(0), outside[0], outside[1]

    parts = _each(part, t.numel())
    counts = parts[0][0] if len(parts) == 1 else np.sum([p[0] for p in parts], axis=0)
    return counts, sum(p[1] for p in parts), sum(p[2] for p in parts)


# -- large tensors on more than one core ---------------------------------------------------------
# A tensor of at least PARALLEL_MIN elements is cut into pieces of PIECE elements (boundaries fixed
# by its size alone, so the sums are added in the same order whatever the thread count: the same
# numbers on 1 thread or 8). The caller works through the pieces, and so do up to ``threads() - 1``
# helper threads (a ctypes call releases the GIL), each taking the next piece left: on a loaded
# machine a helper that does not get a core takes no piece, and the caller waits at most for the
# one piece a helper holds, never for a helper to be scheduled.
PARALLEL_MIN = 1 << 21  # below, handing pieces to a helper thread costs more than it saves (measured)
PIECE = 1 << 18  # a multiple of the kernels' blocks


_caller = threading.local()  # reduce.steady's caller's torch thread count, while it runs torch on one


def threads() -> int:
    """Threads for one reduction: torch's thread count (the user's choice; the caller's
    while ``reduce.steady`` holds torch to one thread), at most the cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(getattr(_caller, "threads", None) or torch.get_num_threads(), cores))


@contextlib.contextmanager
def caller_threads(n: int) -> Iterator[None]:
    """Within the block, ``threads()`` counts ``n`` torch threads."""
    before = getattr(_caller, "threads", None)
    _caller.threads = n
    try:
        yield
    finally:
        _caller.threads = before


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="nnspec-reduce")


def _each(part: Callable[[int, int], _T], n: int) -> list[_T]:
    """``part(lo, hi)`` over the pieces of ``range(n)``, in order (one piece below PARALLEL_MIN)."""
    if n < PARALLEL_MIN:
        return [part(0, n)]
    bounds = [(lo, min(lo + PIECE, n)) for lo in range(0, n, PIECE)]
    out: list[Any] = [None] * len(bounds)
    left = iter(range(len(bounds)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(left, None)
            if i is None:
                return
            out[i] = part(*bounds[i])

    helpers = [_pool().submit(work) for _ in range(threads() - 1)]
    work()
    for h in helpers:
        h.result()
    return out


def _ends(mins: list[float], maxs: list[float]) -> tuple[float, float]:
    """The min and max of pieces' mins and maxs; a NaN in any piece is a NaN end."""
    if any(v != v for v in mins + maxs):
        return math.nan, math.nan
    return min(mins), max(maxs)
