"""Heavy imports (torch, numpy, pandas, Altair, vl-convert) with Ctrl-C deferred.

A KeyboardInterrupt in the middle of ``import torch`` (or numpy) leaves its
C extension half-registered in ``sys.modules``: every later import in that
process fails ("module functions cannot set METH_CLASS", "partially
initialized module 'torch'", "cannot initialize type ... already defined"),
so one Ctrl-C during the first render broke every later render of a notebook
or a long-lived process. ``load_heavy`` imports them with SIGINT held back
and raises the KeyboardInterrupt once they are complete.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RENDER = ("nnspec.pipeline", "altair", "vl_convert")


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """SIGINT held back for the duration (main thread only; elsewhere as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            if callable(old) and old is not signal.default_int_handler:
                old(signal.SIGINT, None)
            elif old != signal.SIG_IGN:
                raise KeyboardInterrupt


def load_heavy(modules=RENDER) -> None:
    """Import ``modules`` completely or not at all, whatever Ctrl-C does meanwhile."""
    if all(m in sys.modules for m in modules):
        return
    with sigint_deferred():
        for m in modules:
            try:
                importlib.import_module(m)
            except ImportError:
                pass  # an optional one: the stage that needs it says so
