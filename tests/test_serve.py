"""nnspec serve: the dashboard on 127.0.0.1, current as a run grows and as the spec changes,
without a reload; an invalid spec shows its located error and keeps the last good charts."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from nnspec.cli import serve as serve_module
from tests.conftest import ROOT

SPEC = """nnspec: 1
title: Live
vars: {lr: 0.1}
model: {factory: "tests.fixtures.models:make_tiny_mlp"}
loss: cross_entropy
views:
  - query: loss over steps
  - query: weights of fc1 | heatmap
"""

# records `first` steps, waits for the file `go`, records `then` more, keeps the run open until `go.end`
_WRITER = """
import os, sys, time, torch
sys.path.insert(0, {root!r})
import nnspec
from tests.fixtures.models import TinyMLP
torch.manual_seed(0)
model = TinyMLP()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
total = {first} + {then}
with nnspec.Recorder({spec!r}, model, run={run!r}, record_every=1, steps=total, optimizer=opt) as rec:
    for step in range(total):
        if step == {first}:
            while not os.path.exists({go!r}):
                time.sleep(0.05)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        rec.step(step, loss=loss)
        opt.step(); opt.zero_grad()
    while not os.path.exists({go!r} + ".end"):
        time.sleep(0.05)
"""


def _wait(cond, timeout=60.0, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    return None


def _steps(run) -> int:
    try:
        con = sqlite3.connect(f"file:{os.path.join(run, 'run.sqlite')}?mode=ro", uri=True)
        try:
            return con.execute("SELECT count(*) FROM steps").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _writer(tmp_path, spec, first=3, then=3):
    run, go = str(tmp_path / "runs" / "live"), str(tmp_path / "go")
    code = _WRITER.format(root=ROOT, spec=str(spec), run=run, go=go, first=first, then=then)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    assert _wait(lambda: _steps(run) >= first or proc.poll() is not None), "the writer recorded nothing"
    assert proc.poll() is None
    return proc, run, go


class Served:
    """``nnspec serve`` in a subprocess on a free port."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnspec", "serve", *map(str, args), "--port", "0", "--interval", "0.1"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()
        line = self.proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, self.err)
        self.url = line.split(" at ", 1)[1].split(" ", 1)[0]
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def get(self, path, host=None):
        req = urllib.request.Request(self.url.rstrip("/") + path, headers={"Host": host} if host else {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        with opener.open(req, timeout=10) as r:
            return r.status, r.read().decode()

    def state(self):
        return json.loads(self.get("/api/state")[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net says) listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


# -- HTTP alone ---------------------------------------------------------------------------------
def test_state_cards_and_the_page_over_http_and_ctrl_c_exits_0(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    proc, run, go = _writer(tmp_path, spec)
    s = Served(spec, "--run", run)
    try:
        assert _wait(lambda: s.state()["version"] >= 1), s.err
        assert s.state()["error"] is None
        if os.path.exists("/proc/net/tcp"):
            assert _listening(s.port) == ["0100007F"]  # 127.0.0.1 and nothing else
        status, page = s.get("/")
        assert status == 200 and "window.nnspecLive=" in page and "/api/state" in page
        cards = json.loads(s.get("/api/cards")[1])
        ids = [c["id"] for c in cards["cards"]]
        assert {"view-0", "view-1"} <= set(ids) and cards["version"] >= 1
        assert all(c["html"].startswith("<section") and c["html"] in cards["main"] for c in cards["cards"])
        with pytest.raises(urllib.error.HTTPError) as e:  # a page elsewhere (DNS rebinding) reads nothing
            s.get("/api/state", host="evil.example:80")
        assert e.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as e:
            s.get("/nothing")
        assert e.value.code == 404
        before = s.state()["version"]
        open(go, "w").close()  # the run grows: a new version, without anyone asking
        assert _wait(lambda: s.state()["version"] > before and _steps(run) == 6 and _max_step(s) == 5, 30)
        spec.write_text(SPEC.replace("views:", "views: [unclosed"))  # invalid: the located error, last charts kept
        err = _wait(lambda: s.state()["error"], 30)
        assert err and f"{spec}:" in err and "error" in err, err
        assert _max_step(s) == 5
        spec.write_text(SPEC)
        assert _wait(lambda: s.state()["error"] is None, 30)
    finally:
        code = s.stop()
        open(go + ".end", "w").close()
        _stop(proc)
    assert code == 0, s.err
    assert any("stopped" in line for line in s.err)


def _max_step(s) -> int:
    cards = json.loads(s.get("/api/cards")[1])
    html = next(c["html"] for c in cards["cards"] if c["id"] == "view-0")
    spec = json.loads(html.split('type="application/json" id="spec-0">', 1)[1].split("</script>", 1)[0])
    return max(_steps_in(spec), default=-1)


def _steps_in(node):
    if isinstance(node, dict):
        if isinstance(node.get("step"), int):
            yield node["step"]
        for v in node.values():
            yield from _steps_in(v)
    elif isinstance(node, list):
        for v in node:
            yield from _steps_in(v)


def test_a_port_in_use_is_a_clear_error_and_exit_1(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "nnspec", "serve", str(spec), "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert serve_module.port_in_use(port) in out.stderr


def test_a_spec_invalid_from_the_start_is_served_as_its_error_until_fixed(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("nnspec: 1\nviews: [unclosed\n")
    s = Served(spec)
    try:
        err = _wait(lambda: s.state()["error"])
        assert err and f"{spec}:3:1: error: invalid YAML" in err and s.state()["version"] == 0
        status, page = s.get("/")  # a page that shows the banner and reloads at the first good render
        assert status == 200 and '"version": 0' in page
        spec.write_text(
            "nnspec: 1\nmodel: {factory: 'tests.fixtures.models:make_tiny_mlp'}\nviews: [{query: weights of fc1 | heatmap}]\n"
        )
        assert _wait(lambda: s.state() == {"version": 1, "error": None})
        assert "view-0" in s.get("/")[1]
    finally:
        assert s.stop() == 0, s.err


def test_the_live_script_is_in_served_pages_only(tmp_path):
    import nnspec
    from nnspec.cli.serve import inject, split_page

    dash = nnspec.render({"nnspec": 1, "title": "t", "model": {"factory": "tests.fixtures.models:make_tiny_mlp"},
                          "views": [{"query": "weights of fc1 | heatmap"}]}, out=str(tmp_path))  # fmt: skip
    written = "".join(open(p).read() for p in dash.files if p.endswith(".html"))
    assert "nnspecLive" not in written and "/api/state" not in written
    main, cards = split_page(dash.html())
    served = inject(dash.html(), 3, cards)
    assert [c["id"] for c in cards if c["id"].startswith("view-")] == ["view-0"]
    assert 'window.nnspecLive={"cards": {' in served and '"version": 3}' in served
    assert served.index("/api/state") < served.rindex("</body>")


# -- in Chromium ---------------------------------------------------------------------------------
MAX_STEP_JS = """() => {
  const walk = (n) => Array.isArray(n) ? Math.max(-1, ...n.map(walk))
    : (n && typeof n === 'object') ? Math.max(typeof n.step === 'number' ? n.step : -1, ...Object.values(n).map(walk))
    : -1;
  const el = document.getElementById('spec-0');
  return el ? walk(JSON.parse(el.textContent)) : -2;
}"""

CHARTS_DRAWN_JS = """() => { const els = [...document.querySelectorAll('[data-spec]')];
  return els.length >= 2 && els.every(e => e.dataset.rendered === 'yes' && e.querySelector('svg')); }"""


@pytest.mark.browser
def test_the_page_follows_a_growing_run_and_the_spec_without_a_reload(tmp_path):
    from tests import browser_util

    sync_api = browser_util.require()
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    proc, run, go = _writer(tmp_path, spec)
    s = Served(spec, "--run", run)
    try:
        assert _wait(lambda: s.state()["version"] >= 1), s.err
        with browser_util.launch(sync_api) as browser:
            page, errors, blocked = browser_util.open_page(browser, s.url)
            assert page.evaluate(MAX_STEP_JS) == 2
            page.evaluate("() => { window.__notReloaded = true; window.scrollTo(0, 40); }")
            t0 = time.time()
            open(go, "w").close()  # three more steps recorded by the other process
            page.wait_for_function(f"() => ({MAX_STEP_JS})() === 5", timeout=20_000)
            grew = time.time() - t0
            page.wait_for_function(CHARTS_DRAWN_JS, timeout=20_000)
            assert page.evaluate("() => window.__notReloaded") is True  # swapped in place, no reload
            assert page.evaluate("() => document.querySelector('#view-1 ul') !== null")  # the model card's note
            assert "draws the model" in page.inner_text("#view-1")

            spec.write_text(SPEC.replace("views:", "views: [unclosed"))  # an invalid spec
            page.wait_for_function(
                "() => { const b = document.getElementById('nnspec-live-banner'); return b && b.dataset.kind === 'error'; }",
                timeout=20_000,
            )
            text = page.inner_text("#nnspec-live-banner")
            assert f"{spec}:" in text and "error" in text, text
            assert page.evaluate(CHARTS_DRAWN_JS) and page.evaluate(MAX_STEP_JS) == 5  # the last good charts

            spec.write_text(SPEC.replace("title: Live", "title: Live again"))  # fixed
            page.wait_for_function("() => !document.getElementById('nnspec-live-banner')", timeout=20_000)
            page.wait_for_function(CHARTS_DRAWN_JS, timeout=20_000)
            assert page.evaluate("() => window.__notReloaded") is True

            spec.write_text(SPEC + "  - query: weights of fc2 | heatmap\n")  # a card comes: <main> is swapped
            page.wait_for_function("() => document.querySelector('#view-2 [data-spec]')", timeout=20_000)
            page.wait_for_function(CHARTS_DRAWN_JS, timeout=20_000)
            assert page.evaluate("() => window.__notReloaded") is True
            assert page.evaluate("() => document.querySelectorAll('section.card[id^=view-]').length") == 3
            assert not blocked and not errors, (blocked, errors)
            print(f"run grew on the page {grew:.1f} s after the steps were released")
    finally:
        code = s.stop()
        open(go + ".end", "w").close()
        _stop(proc)
    assert code == 0, s.err


def _record(spec, run: str, steps: int = 3) -> None:
    """A short finished run at ``run``, recorded in this process."""
    import torch

    import nnspec
    from tests.fixtures.models import TinyMLP
    from tests.helpers import train

    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    with nnspec.Recorder(str(spec), model, run=run, record_every=1, steps=steps, optimizer=opt) as rec:
        train(rec, model, x, y, opt, steps)


def _drawn(s) -> set[str]:
    """The run names the served page's runs table shows, once a render is good."""
    cards = json.loads(s.get("/api/cards")[1])
    return {n for n in ("run-alpha", "run-beta") if f'["{n}", ' in cards["main"]}


def test_a_run_glob_follows_runs_created_and_removed_while_serving(tmp_path):
    import shutil

    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    _record(spec, str(runs / "run-alpha"))
    s = Served(spec, "--run", str(runs / "*"))
    try:
        assert _wait(lambda: s.state()["version"] >= 1), s.err
        assert s.state()["error"] is None and _drawn(s) == {"run-alpha"}
        _record(spec, str(runs / "run-beta"))  # a run started after the server: drawn, without a restart
        assert _wait(lambda: s.state()["error"] is None and _drawn(s) == {"run-alpha", "run-beta"}, 30), s.err
        shutil.rmtree(runs / "run-alpha")  # a run removed: dropped, and no error stays
        assert _wait(lambda: s.state()["error"] is None and _drawn(s) == {"run-beta"}, 30), (s.state(), s.err)
    finally:
        code = s.stop()
    assert code == 0, s.err
    assert not any("Traceback" in line for line in s.err)
