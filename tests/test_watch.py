"""render --watch: a change to the spec or a file it extends renders again; an invalid spec keeps the last good dashboard."""

from __future__ import annotations

import os
import threading
import time

import nnspec
from nnspec.cli.watch import watch

MODEL = 'model: {factory: "tests.fixtures.models:make_tiny_mlp"}\n'


def _wait(cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_watch_renders_on_changes_and_keeps_the_last_good_dashboard(tmp_path):
    base = tmp_path / "base.yaml"
    spec = tmp_path / "s.yaml"
    out = tmp_path / "out"
    html = out / "s.html"
    base.write_text("nnspec: 1\ntitle: First title\n")
    spec.write_text("nnspec: 1\nextends: base.yaml\n" + MODEL + "views:\n  - query: weights of fc1 | heatmap\n")
    said, stop = [], threading.Event()

    def once():
        nnspec.render(str(spec), out=str(out))

    t = threading.Thread(target=watch, args=(str(spec), once, said.append, stop.is_set, 0.05), daemon=True)
    t.start()
    try:
        assert _wait(lambda: html.exists() and "First title" in html.read_text())
        assert _wait(lambda: any(str(base) in s for s in said))  # it watches the extended file too
        time.sleep(0.05)
        base.write_text("nnspec: 1\ntitle: Second title\n")  # a change in the file it extends
        assert _wait(lambda: "Second title" in html.read_text())
        good = html.read_text()
        spec.write_text(
            "nnspec: 1\nextends: base.yaml\n" + MODEL + "views:\n  - query: weights of fc1 | heatmpa\n  - {}\n"
        )
        assert _wait(lambda: any("error" in s and "kept the last good dashboard" in s for s in said))
        assert html.read_text() == good
        os.utime(spec)  # still invalid: still the old dashboard
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
