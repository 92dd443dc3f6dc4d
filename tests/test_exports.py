"""PNG/SVG/PDF exports in a process pool: the files are the serial path's bytes,
a view vl-convert cannot draw fails alone, a refused image keeps its chart."""

from __future__ import annotations

import os
import time

import pytest
import torch

import nnspec
from nnspec.output import convert, write
from tests.fixtures.models import TinyMLP
from tests.helpers import spec

QUERIES = [
    "weights of fc1 | heatmap",
    "weights of * | histogram",
    "weights of fc2 | histogram(bins=7)",
    "weights of * | box",
]


def _dash():
    torch.manual_seed(0)
    views = [{"title": f"view {i}", "query": q} for i, q in enumerate(QUERIES)]
    return nnspec.render(spec(views, loss=None), model=TinyMLP())


def _files(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def _serial(monkeypatch):
    monkeypatch.setattr(convert, "POOL_WORKERS", 0)


MANY_CORES = convert.cores() >= 2


def test_pool_size(monkeypatch):
    assert convert.pool_size(0) == 0 and convert.pool_size(2) == 0  # one or two views: drawn here
    assert convert.pool_size(10) == (min(convert.POOL_WORKERS, convert.cores() - 1) if MANY_CORES else 0)
    monkeypatch.setattr(convert, "cores", lambda: 2)
    assert convert.pool_size(10) == 1  # this process draws too: one worker beside it on two cores
    monkeypatch.setattr(convert, "cores", lambda: 1)
    assert convert.pool_size(10) == 0


@pytest.mark.skipif(not MANY_CORES, reason="one core: exports are drawn in process")
def test_parallel_files_are_the_serial_bytes(tmp_path, monkeypatch):
    a, b = tmp_path / "pool", tmp_path / "serial"
    pooled = write.write_outputs(_dash(), str(a), ("json", "png", "svg", "pdf"))
    with monkeypatch.context() as m:
        _serial(m)
        serial = write.write_outputs(_dash(), str(b), ("json", "png", "svg", "pdf"))
    assert [os.path.basename(p) for p in pooled] == [os.path.basename(p) for p in serial]
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and len(fa) == 4 * len(QUERIES)
    for name in fa:
        if name.endswith(".pdf"):  # a PDF carries its creation time: the same kind of file, not the same bytes
            assert fa[name].startswith(b"%PDF") and fb[name].startswith(b"%PDF")
        else:
            assert fa[name] == fb[name], name


def test_svg_gradients_are_numbered_in_each_file():
    """Vega numbers gradients over its engine's life: each file counts from 0, so the
    SVG a worker draws is the SVG this process draws after many others."""
    dash = _dash()
    first = convert.convert(dash.views[0].vega_lite(), "svg")  # a heatmap: a colour ramp
    assert 'id="gradient_0"' in first and "url(#gradient_0)" in first
    assert convert.convert(dash.views[0].vega_lite(), "svg") == first


def _break(dash):
    """View 1: an expression vl-convert cannot parse; view 2: a chart too large for a PNG."""
    bad = dict(dash.views[1].vega_lite())
    bad["transform"] = [{"filter": "datum.value ==="}]
    dash.views[1]._vl = bad
    big = dict(dash.views[2].vega_lite())
    big["width"] = big["height"] = 6000
    dash.views[2]._vl = big


@pytest.mark.parametrize("pooled", [True, False])
def test_a_failing_view_fails_alone_and_a_refused_image_keeps_its_chart(tmp_path, monkeypatch, pooled):
    if pooled and not MANY_CORES:
        pytest.skip("one core: exports are drawn in process")
    if not pooled:
        _serial(monkeypatch)
    dash = _dash()
    _break(dash)
    written = write.write_outputs(dash, str(tmp_path), ("png", "svg"))
    names = {os.path.basename(p) for p in written}
    assert dash.views[0].error is None and dash.views[3].error is None
    assert "internal error while drawing this view" in dash.views[1].error and dash.views[1].chart is None
    assert dash.views[2].error is None and dash.views[2].chart is not None
    assert any("no PNG written" in n for n in dash.views[2].notes)
    assert names == {
        "dashboard.view-0.png",
        "dashboard.view-0.svg",
        "dashboard.view-2.svg",  # its PNG refused, its SVG written
        "dashboard.view-3.png",
        "dashboard.view-3.svg",
    }


def test_workers_that_cannot_start_leave_the_views_to_this_process(tmp_path, monkeypatch):
    def cannot(*args, **kwargs):
        raise OSError("no processes here")

    monkeypatch.setattr(convert.subprocess, "Popen", cannot)
    written = write.write_outputs(_dash(), str(tmp_path), ("png",))
    assert len(written) == len(QUERIES) and all(os.path.getsize(p) > 0 for p in written)


def _slowly(monkeypatch, seconds=0.4):
    """This process draws each view ``seconds`` late: the workers start in time to take some."""
    real = write.convert

    def slow(spec, fmt):
        time.sleep(seconds)
        return real(spec, fmt)

    monkeypatch.setattr(write, "convert", slow)


def _serial_files(tmp_path, monkeypatch, formats):
    with monkeypatch.context() as m:
        _serial(m)
        write.write_outputs(_dash(), str(tmp_path / "serial"), formats)
    return _files(tmp_path / "serial")


@pytest.mark.parametrize("when", ["sent", "received"])
def test_a_worker_that_dies_leaves_its_views_to_this_process(tmp_path, monkeypatch, when):
    """A worker killed as a job is sent to it, or once it holds it: every view is still
    written, with the serial path's bytes (this process draws what the worker held)."""
    real = convert._Worker.send
    sent = []

    def dies(self, job):
        sent.append(1)
        if when == "sent":
            self.proc.kill()
            self.proc.wait()
        ok = real(self, job)
        self.proc.kill()
        return ok

    serial = _serial_files(tmp_path, monkeypatch, ("png", "svg"))
    monkeypatch.setattr(write, "pool_size", lambda n: 2)
    monkeypatch.setattr(convert._Worker, "send", dies)
    _slowly(monkeypatch)
    write.write_outputs(_dash(), str(tmp_path / "pool"), ("png", "svg"))
    assert 1 <= len(sent) <= 4  # each worker died on the first view it was sent (a second may be in its pipe)
    assert _files(tmp_path / "pool") == serial


@pytest.mark.skipif(not MANY_CORES, reason="one core: exports are drawn in process")
def test_this_process_and_a_worker_share_the_views(tmp_path, monkeypatch):
    """This process draws from the first view on and the worker takes views once it has
    started: both drew some, each view once or (the last ones) by whichever finished
    first, and the files are the serial path's bytes."""
    serial = _serial_files(tmp_path, monkeypatch, ("png", "svg"))
    monkeypatch.setattr(write, "pool_size", lambda n: 1)
    here = []
    real = write.convert

    def slow(spec, fmt):
        here.append(fmt)
        time.sleep(0.5)  # a view a second here: the worker starts (about 0.5 s) in time to take some
        return real(spec, fmt)

    monkeypatch.setattr(write, "convert", slow)
    write.write_outputs(_dash(), str(tmp_path / "pool"), ("png", "svg"))
    assert _files(tmp_path / "pool") == serial
    assert 2 <= len(here) < 2 * len(QUERIES)  # this process drew some views, the worker the rest


def test_a_worker_that_has_not_started_is_stopped_when_the_views_are_done():
    """Views this process draws before the worker's engine has started: the worker is stopped
    then, not waited for."""
    pool = convert.ExportPool(1, lambda spec, fmt: f"{fmt} of {spec['n']}")
    for n in range(3):
        pool.submit({"n": n}, ["svg"])
    t0 = time.perf_counter()
    outcomes = pool.results()
    pool.close()
    assert outcomes == [[("ok", "svg", f"svg of {n}")] for n in range(3)]
    assert time.perf_counter() - t0 < 0.3  # a worker's start is about 0.5 s
    assert all(w.proc.poll() is not None for w in pool.workers)
