"""Where a path written in a spec points: relative paths are relative to the spec's folder."""

from __future__ import annotations

import os


def resolve_path(name: str, base_dir: str, cwd_fallback: bool = False) -> str:
    """``name`` as written in a spec in ``base_dir``: absolute as it is, else under ``base_dir``;
    with ``cwd_fallback``, a relative path that is not there is taken from the working folder
    (a checkpoint named on the command line's terms)."""
    if os.path.isabs(name):
        return name
    here = os.path.join(base_dir, name)
    if cwd_fallback and not os.path.exists(here):
        return os.path.abspath(name)
    return here
