"""Vega-Lite ──vl-convert──▶ PNG, SVG or PDF, at the Vega-Lite version Altair emits.

A PNG is a pixel buffer: vl-convert aborts the whole process (SIGABRT) when
one is too large to allocate (a chart 100,000 px wide). So a PNG is measured
first (its SVG states the size) and refused past ``MAX_PNG_PIXELS`` with
``ImageTooLarge``: that view's file is not written, the others are. The PNG is
that SVG rasterised (``svg_to_png``: the bytes ``vegalite_to_png`` gives, the
chart drawn once instead of twice).

A dashboard's views export in a small pool of worker processes (``ExportPool``,
``python -m nnspec.output.convert --serve``): each starts vl-convert's engine
once and draws the views it is sent, the same calls as the serial path, so the
files are the same bytes. One or two views, one core, cores kept busy by other
work, or workers that cannot start or die: the views are drawn here, one after
another.

Fonts: ``output.fonts`` (vl-convert's font database, loaded once per process).
"""

from __future__ import annotations

import os
import pickle
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from nnspec.errors import NnspecError, SpecError
from nnspec.output.fonts import prime_fonts

PNG_SCALE = 2  # device pixels per CSS pixel of the exported PNG
MAX_PNG_PIXELS = 100_000_000  # 100 Mpx (~400 MB of RGBA): a 4000×4000 chart at scale 2 is 64 Mpx
_SVG_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([0-9.]+)"[^>]*?\bheight="([0-9.]+)"')
_GRADIENT = re.compile(r'(id="|url\(#)gradient_([0-9]+)')


class ImageTooLarge(SpecError):
    """A chart too large to export as PNG: the view's file is refused, nothing aborts."""


def too_large(width: float, height: float, scale: int, limit: int) -> str:
    px = width * height * scale * scale
    return (
        f"this chart is {width:,.0f}×{height:,.0f} px; as a PNG at scale {scale} it would be "
        f"{px / 1e6:,.0f} Mpx, over the limit of {limit / 1e6:,.0f} Mpx: no PNG written for it"
    )


def too_large_hint() -> str:
    return "give the view a smaller width/height (at most 4000), fewer layers, or export svg/pdf"


def vl_version() -> str:
    import altair as alt
    import vl_convert as vlc

    want = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    have = vlc.get_vegalite_versions()
    return want if want in have else have[-1]


def svg_size(svg: str) -> tuple[float, float] | None:
    """The width and height an SVG of vl-convert's states (None when it states none)."""
    m = _SVG_SIZE.search(svg[:4096])
    return (float(m.group(1)), float(m.group(2))) if m else None


def stable_ids(svg: str) -> str:
    """``svg`` with its gradients numbered from 0 in order of appearance. Vega numbers
    them over its engine's life (``gradient_0``, then ``gradient_1`` in the next chart
    with a colour ramp): renumbered, a view's SVG is the same bytes whichever process
    drew it, and however many charts it drew before."""
    ids: dict[str, str] = {}
    return _GRADIENT.sub(lambda m: f"{m.group(1)}gradient_{ids.setdefault(m.group(2), str(len(ids)))}", svg)


def check_png_size(spec: dict, limit: int = MAX_PNG_PIXELS, scale: int = PNG_SCALE, version: str | None = None) -> None:
    """Raise ``ImageTooLarge`` when the PNG of ``spec`` would hold more than ``limit`` pixels."""
    import vl_convert as vlc

    prime_fonts()
    check_svg_size(vlc.vegalite_to_svg(spec, vl_version=version or vl_version()), limit, scale)


def check_svg_size(svg: str, limit: int = MAX_PNG_PIXELS, scale: int = PNG_SCALE) -> None:
    """``check_png_size`` for the chart drawn as ``svg``."""
    size = svg_size(svg)
    if size is not None and size[0] * size[1] * scale * scale > limit:
        raise ImageTooLarge(too_large(size[0], size[1], scale, limit), None, too_large_hint())


def convert(spec: dict, fmt: str, version: str | None = None):
    """``spec`` as ``fmt`` (png, svg or pdf); ``version``: Vega-Lite's (``vl_version()`` when None)."""
    import vl_convert as vlc

    prime_fonts()
    version = version or vl_version()
    if fmt == "png":  # the SVG first: it states the size; then that SVG rasterised (the same bytes
        # as vegalite_to_png, which would draw the chart a second time)
        svg = vlc.vegalite_to_svg(spec, vl_version=version)
        check_svg_size(svg)
        return vlc.svg_to_png(svg, scale=PNG_SCALE)
    if fmt == "svg":
        return stable_ids(vlc.vegalite_to_svg(spec, vl_version=version))
    return vlc.vegalite_to_pdf(spec, vl_version=version)


# -- a view's exports, here or in a worker ---------------------------------------------------
# One outcome per format, in order: ("ok", fmt, bytes or str), ("refused", fmt, message: too
# large, the view keeps its chart and gets the note), ("failed", fmt, first line of
# vl-convert's error: the view fails alone; the formats after it are not tried).
Outcome = tuple[str, str, object]


def export_view(spec: dict, formats: Sequence[str], draw: Callable | None = None) -> list[Outcome]:
    """Each of ``formats`` of one view's Vega-Lite, drawn by ``draw(spec, fmt)`` (``convert``)."""
    draw = draw or convert
    out: list[Outcome] = []
    for fmt in formats:
        try:
            out.append(("ok", fmt, draw(spec, fmt)))
        except NnspecError as e:  # too large an image: this file is not written, the view still shows
            out.append(("refused", fmt, e.message))
        except ValueError as e:  # vl-convert could not draw our chart: our bug, this view fails alone
            out.append(("failed", fmt, str(e).splitlines()[0] if str(e) else ""))
            break
    return out


POOL_WORKERS = 2  # processes at most (and at most the machine's cores)
POOL_MIN_VIEWS = 3  # fewer views to export: drawn here (a worker's start costs about one view)


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def busy(n_cores: int) -> bool:
    """Whether other work keeps the cores busy: as many runnable processes as cores, on
    average over the last minute (this one included). Then workers would only take turns
    with this process and pay their start for nothing (measured: 1.3× the serial time)."""
    try:
        return os.getloadavg()[0] >= n_cores
    except (AttributeError, OSError):
        return False


def pool_size(n_views: int) -> int:
    """How many worker processes export ``n_views`` views (0: draw them here)."""
    n_cores = cores()
    n = min(POOL_WORKERS, n_cores, n_views)
    if n < 2 or n_views < POOL_MIN_VIEWS or not sys.executable:
        return 0
    return 0 if busy(n_cores) else n


class _Worker:
    """One ``--serve`` process: a job (spec, formats, version, fonts) in on its stdin, its
    outcomes out (None for every job when its fonts are not ``fonts``: ``prime_fonts``)."""

    def __init__(self, version: str) -> None:
        # the folder that holds the nnspec package (this file is nnspec/output/convert.py)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnspec.output.convert", "--serve", version],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def run(self, job: tuple) -> list[Outcome] | None:
        """The job's outcomes; None when the worker could not draw it (the caller draws it)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            pickle.dump(job, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            return pickle.load(self.proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ExportPool:
    """Views' exports in ``workers`` processes, as they are submitted; ``results()`` gives
    each view's outcomes in submission order. ``workers`` 0, or workers that cannot start:
    ``results()`` draws every view here (``draw``), as does a view a worker failed on."""

    def __init__(self, workers: int, draw: Callable | None = None) -> None:
        self.draw = draw
        self.jobs: list[tuple[dict, tuple[str, ...]]] = []
        self.results_: dict[int, list[Outcome] | None] = {}
        self.queue: queue.Queue = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.version: str | None = None
        self.fonts: str | None = None
        started: list[_Worker] = []
        if workers:
            try:
                self.version = vl_version()
                for _ in range(workers):
                    started.append(_Worker(self.version))
                self.fonts = prime_fonts()  # while the workers start
            except (OSError, ValueError, ImportError):  # processes cannot start here: draw here
                for worker in started:
                    worker.close()
                started = []
        self.threads = [threading.Thread(target=self._feed, args=(w,), daemon=True) for w in started]
        for t in self.threads:
            t.start()

    def _feed(self, worker: _Worker) -> None:
        try:
            while (i := self.queue.get()) is not None:
                spec, formats = self.jobs[i]
                out = worker.run((spec, formats, self.version, self.fonts))
                self.results_[i] = out
                if out is None:  # the worker died: the others (or results()) take the rest
                    return
        finally:
            worker.close()

    def submit(self, spec: dict, formats: Sequence[str]) -> None:
        self.jobs.append((spec, tuple(formats)))
        if self.threads:
            self.queue.put(len(self.jobs) - 1)

    def results(self) -> list[list[Outcome]]:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        out = []
        for i, (spec, formats) in enumerate(self.jobs):
            got = self.results_.get(i)
            out.append(got if got is not None else export_view(spec, formats, self.draw))
        return out

    def close(self) -> None:
        """Stop the workers without waiting for what is queued (after an error)."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()


def _serve(version: str) -> None:
    """A worker: jobs from stdin, outcomes to the stdout it started with (anything the
    engine prints goes to stderr); ends at the end of its input. It starts vl-convert's
    engine (and the rasteriser's fonts) at once, while the first views are still being
    made, by drawing a point. A job for fonts other than its own (``prime_fonts``: the parent's
    font database was loaded before nnspec loaded it) gets None: the parent draws it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which closes our input
    jobs, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        import vl_convert as vlc

        prime_fonts()
        vlc.svg_to_png(vlc.vegalite_to_svg({"mark": "point"}, vl_version=version), scale=PNG_SCALE)
    except Exception:  # the first job says what is wrong, as the serial path would
        pass
    while True:
        try:
            spec, formats, version, fonts = pickle.load(jobs)
        except EOFError:
            return
        try:
            out: list[Outcome] | None = None
            if fonts == prime_fonts():
                out = export_view(spec, formats, lambda s, f, v=version: convert(s, f, v))
        except Exception:  # anything else: the parent draws this view itself, and raises as it would
            out = None
        pickle.dump(out, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"] and len(sys.argv) == 3:
    _serve(sys.argv[2])
