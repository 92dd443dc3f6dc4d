"""Where a path written in a spec points, and how nnspec reads the files a spec names.

Relative paths are relative to the spec's folder. Under ``confine(root)`` (the API's
``root=``, the command line's ``--root``) every path a spec reads or writes must lie
inside ``root`` once symbolic links are resolved; a path outside is a SpecError at the
key that named it. Files are read only when they are regular files, and only up to a
size limit (``read_regular``, ``check_regular``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from contextvars import ContextVar

from nnspec.errors import Span, SpecError

_ROOT: ContextVar[str | None] = ContextVar("nnspec_root", default=None)


@contextlib.contextmanager
def confine(root: str | os.PathLike[str] | None) -> Iterator[str | None]:
    """For the duration, every file a spec reads or writes must lie under ``root``
    (None: no confinement, or the one already in force)."""
    if root is None:
        yield _ROOT.get()
        return
    real = os.path.realpath(os.fspath(root))
    token = _ROOT.set(real)
    try:
        yield real
    finally:
        _ROOT.reset(token)


def current_root() -> str | None:
    """The folder specs are confined to now, or None."""
    return _ROOT.get()


def inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def check_inside(path: str, span: Span | None = None, what: str = "file", root: str | None = None) -> str:
    """``path``, if it lies under the root in force (or ``root``); else a SpecError at ``span``."""
    from nnspec.spec import messages

    if "\x00" in path:
        raise SpecError(messages.bad_path(what, path.replace("\x00", "\\0")), span)
    root = root or current_root()
    if root is not None and not inside(path, root):
        raise SpecError(messages.outside_root(what, path, root), span, messages.outside_root_hint())
    return path


def resolve_path(
    name: str, base_dir: str, cwd_fallback: bool = False, span: Span | None = None, what: str = "file"
) -> str:
    """``name`` as written in a spec in ``base_dir``: absolute as it is, else under ``base_dir``;
    with ``cwd_fallback``, a relative path that is not there is taken from the working folder
    (a checkpoint named on the command line's terms). Confined (``confine``), a path outside
    the root is a SpecError at ``span``."""
    if "\x00" in name:
        return check_inside(name, span, what)
    if os.path.isabs(name):
        return check_inside(name, span, what)
    here = os.path.join(base_dir, name)
    if cwd_fallback and not os.path.exists(here):
        return check_inside(os.path.abspath(name), span, what)
    return check_inside(here, span, what)


def check_regular(
    path: str, limit: int | None, span: Span | None = None, what: str = "file", missing_ok: bool = False
) -> int:
    """The size of ``path`` if it is a regular file of at most ``limit`` bytes; else a SpecError
    (``/dev/zero``, a pipe or a directory would never finish reading). ``missing_ok``: a path
    that does not exist is -1 (its reader says so in its own words)."""
    from nnspec.spec import messages

    check_inside(path, span, what)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return -1
        raise SpecError(messages.cannot_read(path, "No such file or directory", what), span) from None
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SpecError(messages.cannot_read(path, why, what), span) from None
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(messages.not_regular(what, path), span)
    if limit is not None and st.st_size > limit:
        raise SpecError(messages.too_big(what, path, st.st_size, limit), span)
    return st.st_size


def read_regular(path: str, limit: int, span: Span | None = None, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (checked before and while reading)."""
    from nnspec.spec import messages

    check_regular(path, limit, span, what)
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped since the check
                raise SpecError(messages.not_regular(what, path), span)
            data = f.read(limit + 1)
    except OSError as e:
        raise SpecError(messages.cannot_read(path, e.strerror or str(e), what), span) from None
    if len(data) > limit:
        raise SpecError(messages.too_big(what, path, len(data), limit), span)
    return data
