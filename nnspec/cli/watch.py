"""``nnspec render --watch`` and ``nnspec serve``: render again whenever the spec,
a file it extends, a values file, the model's files (the factory's module, the
checkpoint, a model file) or a run it draws (every file in each ``--run``
directory) changes. A spec that no longer loads prints its
error and leaves the last good dashboard where it was; nothing a spec does
(a control character, invalid YAML, a model that raises, a bug of ours)
stops the watch, only Ctrl-C does.

Polling file times (twice a second) needs no extra dependency and works on
every file system, network mounts included. Each file's state is its time,
size and content hash, taken *before* a render: an edit made while the
render runs differs from it, so the next poll renders again. A run directory's
state is the names in it (a run appearing, its WAL created or checkpointed);
its SQLite ``-shm`` file and ``run.lock`` are left out: readers (our own
render) write the first, so watching it would render forever. A ``--run`` glob
(``runs/*``) is matched again at every poll: the run folders it matches are part
of the state, so a run created (or removed) renders again, with it (or without
it). A changed factory module that Python has imported is reloaded before the
next render.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import sys
import time

from nnspec.errors import NnspecError

HASH_LIMIT = 16 << 20  # a larger file is compared by time and size alone
UNWATCHED = ("-shm", "run.lock")  # in a run directory: written by readers, or by a writer's lock
MAX_RUN_FILES = 100  # per run directory


def _state(path: str):
    """What a change of ``path`` changes: time, size and (for a regular file) its content hash."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):  # a run directory: which files it holds
        return ("dir", tuple(_run_files(path)))
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


def _run_files(directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [n for n in names if not n.endswith(UNWATCHED)][:MAX_RUN_FILES]


def _globs(runs) -> dict:
    """Each ``--run`` glob's matches now (the runs it draws): a run created or removed changes them."""
    import glob

    from nnspec.cli.main import run_dirs

    return {("glob", p): tuple(run_dirs([p])) for p in runs if glob.has_magic(p)}


def _snapshot(files, runs) -> dict:
    """The state of every watched file and of every ``--run`` glob's matches."""
    return _times(files) | _globs(runs)


def watched_files(spec_path: str, vars=None, values_files=(), runs=()) -> list[str]:
    """The spec and everything it is built from (what the last load saw): extended specs,
    values files, the model's files, and each run directory (a glob: each it matches now)
    with the files in it."""
    from nnspec.cli.main import run_dirs
    from nnspec.spec.load import resolved

    named = [spec_path, *values_files]  # always: a spec that does not load (or loads to nothing) too
    try:
        named += resolved(spec_path, vars=vars, values_files=values_files).sources
    except Exception:  # a spec that does not load: watch what was named
        pass
    named += model_files(spec_path, vars, values_files)
    for d in run_dirs(runs):
        named += [d, *(os.path.join(d, n) for n in _run_files(d))]
    return list(dict.fromkeys(named))


def model_files(spec_path: str, vars=None, values_files=()) -> list[str]:
    """The factory's module file (``pkg.mod:f`` as Python finds it, or ``file.py:f``),
    the checkpoint and the model file the spec names; what cannot be found is left out."""
    from nnspec.paths import resolve_path
    from nnspec.spec.load import load_spec

    try:
        spec = load_spec(spec_path, vars=vars, values_files=values_files)
    except Exception:
        return []
    m, out = spec.model, []
    for name in (m.checkpoint, m.file):
        if name:
            try:
                out.append(resolve_path(name, spec.base_dir, cwd_fallback=True))
            except Exception:
                pass
    if m.factory:
        found = _module_file(m.factory.rpartition(":")[0], spec.base_dir)
        if found:
            out.append(found)
    return out


def _module_file(ref: str, base_dir: str) -> str | None:
    if ref.endswith(".py"):
        for p in (os.path.join(base_dir, ref), os.path.abspath(ref)):
            if os.path.isfile(p):
                return p
        return None
    module = sys.modules.get(ref)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None:
        try:
            found = importlib.util.find_spec(ref)  # imports the parent packages, not the module
        except Exception:
            return None
        path = found.origin if found is not None else None
    return path if path and os.path.isfile(path) else None


def _reload_changed(changed) -> None:
    """A factory module edited since the last render: import it again (a ``file.py:f``
    factory is executed afresh by every render anyway)."""
    changed = {os.path.abspath(p) for p in changed if p.endswith(".py")}
    if not changed:
        return
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and os.path.abspath(path) in changed:
            try:
                importlib.reload(module)
            except Exception:  # the render that follows imports it and reports the error
                sys.modules.pop(name, None)


def watch(
    spec_path: str,
    render_once,
    say,
    stop=lambda: False,
    interval: float = 0.5,
    vars=None,
    values_files=(),
    runs=(),
):
    """Call ``render_once()`` now and after every change; ``say(text)`` reports.

    ``render_once`` raises NnspecError for a spec that does not load: the
    error is reported and the previous outputs stay untouched (nothing is
    written before the whole render succeeded). Any other exception is
    reported as an internal error; the watch goes on either way. ``runs``: run folders or
    globs, matched again at every poll (``render_once`` expands them itself)."""
    files = [spec_path, *values_files, *runs]
    seen = None
    while not stop():
        latest = _snapshot(files, runs)
        if latest != seen:
            if seen is not None:
                _reload_changed(p for p in files if latest.get(p) != seen.get(p))
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
            files = watched_files(spec_path, vars, values_files, runs)
            # the state a render read is the one from *before* it started: an edit made meanwhile
            # differs from it and renders again; a file first seen now counts as changed if it
            # changed after the render started
            seen = {p: latest[p] if p in latest else _new_state(p, started) for p in files}
            seen |= {k: v for k, v in latest.items() if isinstance(k, tuple)}  # the globs' matches before it
            say(f"watching {', '.join(files)} (Ctrl-C to stop)")
        time.sleep(interval)


def _new_state(path: str, started: int):
    state = _state(path)
    try:
        changed = os.stat(path).st_mtime_ns >= started
    except OSError:
        changed = False
    return ("changed during the render",) if changed else state
