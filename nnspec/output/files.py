"""Atomic writes: a temp file in the same folder, then rename."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata


def write_atomic(path: str, data: str | bytes) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nnspec-", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def slug(text: str, taken: set[str] | None = None) -> str:
    """A file-name slug, unique within ``taken`` (which it updates)."""
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()[:60] or "view"
    if taken is not None:
        base, n = s, 2
        while s in taken:
            s, n = f"{base}-{n}", n + 1
        taken.add(s)
    return s


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
