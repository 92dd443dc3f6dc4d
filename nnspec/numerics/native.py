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

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import torch

FLAGS = ("-O3", "-fPIC", "-shared", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off")
_C = ctypes


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
    lib.nnspec_minmax_f32.argtypes = [p, i64, p]
    lib.nnspec_bins_f32.argtypes = [p, i64, f32, f32, i64, _C.c_int, f32, p, p]
    for fn in (lib.nnspec_moments_f32, lib.nnspec_minmax_f32, lib.nnspec_bins_f32):
        fn.restype = None
    return lib


def usable(t: torch.Tensor) -> bool:
    """A contiguous float32 CPU tensor, and the kernels are there."""
    return t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() and library() is not None


def moments(t: torch.Tensor) -> tuple[float, ...]:
    """(sum and sum of squares of ``t - shift``, sum of |t|, zeros, min, max, shift) of
    a non-empty ``t``; the shift is its first value, so that the variance does not
    cancel when |mean| ≫ std. A non-finite sum: the tensor holds NaN or Inf."""
    out = (_C.c_double * 6)()
    shift = float(t[0])
    library().nnspec_moments_f32(t.data_ptr(), t.numel(), shift, out)  # type: ignore[union-attr]
    if not math.isfinite(shift):
        return math.nan, math.nan, out[2], out[3], out[4], out[5], 0.0
    return out[0], out[1], out[2], out[3], out[4], out[5], shift


def minmax(t: torch.Tensor) -> tuple[float, float]:
    """(min, max) of an all-finite ``t``; a NaN or Inf gives a non-finite end, as aminmax does."""
    out = (_C.c_double * 2)()
    library().nnspec_minmax_f32(t.data_ptr(), t.numel(), out)  # type: ignore[union-attr]
    return out[0], out[1]


def bins(t: torch.Tensor, lo: float, scale: float, n_bins: int, hi: float | None) -> tuple[torch.Tensor, int, int]:
    """(counts with a slot ``n_bins`` for values at hi, below, above) of an all-finite
    ``t``; ``hi`` given: a range, values clamped into the end bins and counted outside."""
    lanes = torch.zeros(4 * (n_bins + 1), dtype=torch.int64)
    outside = (_C.c_int64 * 2)()
    library().nnspec_bins_f32(  # type: ignore[union-attr]
        t.data_ptr(), t.numel(), lo, scale, n_bins, int(hi is not None), 0.0 if hi is None else hi,
        lanes.data_ptr(), outside,
    )  # fmt: skip
    return lanes.view(4, n_bins + 1).sum(0), outside[0], outside[1]
