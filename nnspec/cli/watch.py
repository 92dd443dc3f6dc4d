"""``nnspec render --watch``: render again whenever the spec, a file it
extends or a values file changes. A spec that no longer loads prints its
error and leaves the last good dashboard where it was.

Polling file times (twice a second) needs no extra dependency and works on
every file system, network mounts included.
"""

from __future__ import annotations

import os
import time

from nnspec.errors import NnspecError


def _times(paths) -> dict:
    out = {}
    for p in paths:
        try:
            out[p] = os.stat(p).st_mtime_ns
        except OSError:
            out[p] = None
    return out


def watched_files(spec_path: str, vars=None, values_files=()) -> list[str]:
    """The spec and everything it is built from (what the last load saw)."""
    from nnspec.spec.load import resolved

    try:
        return list(dict.fromkeys(resolved(spec_path, vars=vars, values_files=values_files).sources))
    except NnspecError:
        return [spec_path, *values_files]


def watch(spec_path: str, render_once, say, stop=lambda: False, interval: float = 0.5, vars=None, values_files=()):
    """Call ``render_once()`` now and after every change; ``say(text)`` reports.

    ``render_once`` raises NnspecError for a spec that does not load: the
    error is reported and the previous outputs stay untouched (nothing is
    written before the whole render succeeded)."""
    files = [spec_path, *values_files]
    seen = None
    while not stop():
        latest = _times(files)
        if latest != seen:
            try:
                render_once()
            except NnspecError as e:
                say(f"{e}\n(kept the last good dashboard; watching for changes)")
            files = watched_files(spec_path, vars, values_files)
            seen = _times(files)
            say(f"watching {', '.join(files)} (Ctrl-C to stop)")
        time.sleep(interval)
