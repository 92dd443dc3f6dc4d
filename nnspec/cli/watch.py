"""``nnspec render --watch``: render again whenever the spec, a file it
extends or a values file changes. A spec that no longer loads prints its
error and leaves the last good dashboard where it was; nothing a spec does
(a control character, invalid YAML, a model that raises, a bug of ours)
stops the watch, only Ctrl-C does.

Polling file times (twice a second) needs no extra dependency and works on
every file system, network mounts included. Each file's state is its time,
size and content hash, taken *before* a render: an edit made while the
render runs differs from it, so the next poll renders again.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time

from nnspec.errors import NnspecError

HASH_LIMIT = 16 << 20  # a larger file is compared by time and size alone


def _state(path: str):
    """What a change of ``path`` changes: time, size and (for a regular file) its content hash."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # never read a FIFO or a device: it may never end
        return (st.st_mode, st.st_mtime_ns)
    digest = None
    if st.st_size <= HASH_LIMIT:
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read(HASH_LIMIT + 1)).hexdigest()
        except OSError:
            pass
    return (st.st_mtime_ns, st.st_size, digest)


def _times(paths) -> dict:
    return {p: _state(p) for p in paths}


def watched_files(spec_path: str, vars=None, values_files=()) -> list[str]:
    """The spec and everything it is built from (what the last load saw)."""
    from nnspec.spec.load import resolved

    named = [spec_path, *values_files]  # always: a spec that does not load (or loads to nothing) too
    try:
        return list(dict.fromkeys([*named, *resolved(spec_path, vars=vars, values_files=values_files).sources]))
    except Exception:  # a spec that does not load: watch what was named
        return named


def watch(spec_path: str, render_once, say, stop=lambda: False, interval: float = 0.5, vars=None, values_files=()):
    """Call ``render_once()`` now and after every change; ``say(text)`` reports.

    ``render_once`` raises NnspecError for a spec that does not load: the
    error is reported and the previous outputs stay untouched (nothing is
    written before the whole render succeeded). Any other exception is
    reported as an internal error; the watch goes on either way."""
    files = [spec_path, *values_files]
    seen = None
    while not stop():
        latest = _times(files)
        if latest != seen:
            started = time.time_ns()
            try:
                render_once()
            except NnspecError as e:
                say(f"{e}\n(kept the last good dashboard; watching for changes)")
            except Exception as e:  # a bug of ours, or of the spec's model: report it, keep watching
                say(
                    f"internal error: {type(e).__name__}: {e}\n"
                    "(kept the last good dashboard; watching for changes; please report this)"
                )
            files = watched_files(spec_path, vars, values_files)
            # the state a render read is the one from *before* it started: an edit made meanwhile
            # differs from it and renders again; a file first seen now counts as changed if it
            # changed after the render started
            seen = {p: latest[p] if p in latest else _new_state(p, started) for p in files}
            say(f"watching {', '.join(files)} (Ctrl-C to stop)")
        time.sleep(interval)


def _new_state(path: str, started: int):
    state = _state(path)
    try:
        changed = os.stat(path).st_mtime_ns >= started
    except OSError:
        changed = False
    return ("changed during the render",) if changed else state
