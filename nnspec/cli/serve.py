"""``nnspec serve SPEC [--run DIR]… [--port N]``: the dashboard on 127.0.0.1, kept current.

A background thread renders whenever the spec, a file it is built from (extended
specs, values files, the factory's module, the checkpoint, a model file) or a run
it draws changes (``cli/watch.py``); a ``--run`` glob (``'runs/*'``) is matched
again at every poll, so a run started after the server is drawn and a removed one
dropped. The HTTP server hands out the latest good render. A render that fails
keeps the last good charts and makes its located error the page's banner.

    GET /            the page: the dashboard's HTML with ``output/assets/live.js``
    GET /api/state   {"version": N, "error": null | "spec.yaml:4:9: error: …"}
    GET /api/cards   {"version": N, "main": "<main>'s inner HTML",
                      "cards": [{"id": "view-0", "hash": "…", "html": "<section class=\"card\" …>"}]}

``version`` counts successful renders (0: none yet). The server binds 127.0.0.1
only, answers GET alone, and refuses a request whose Host is not this server
(a web page elsewhere cannot read it through DNS rebinding).
"""

from __future__ import annotations

import contextvars
import errno
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import urlsplit

from nnspec.errors import NnspecError

HOST = "127.0.0.1"
DEFAULT_PORT = 6070
POLL_SECONDS = 0.5

_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


# -- messages ------------------------------------------------------------------------------
def port_in_use(port: int) -> str:
    return (
        f"nnspec serve: error: port {port} on {HOST} is in use (another nnspec serve, or TensorBoard?)\n"
        "hint: choose another with --port N, or --port 0 for a free one"
    )


def cannot_listen(port: int, why: str) -> str:
    return f"nnspec serve: error: cannot listen on {HOST}:{port}: {why}"


def serving(spec: str, url: str) -> str:
    return f"serving {spec} at {url} (Ctrl-C to stop)"


def rendered(version: int, seconds: float) -> str:
    return f"rendered version {version} in {seconds:.1f} s"


# -- the latest render ---------------------------------------------------------------------
class Live:
    """The latest good page and the last error, shared by the render thread and the handlers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = 0
        self.error: str | None = None
        self.main = ""
        self.cards: list[dict] = []
        self.page = _waiting_page()

    def done(self, html: str) -> None:
        main, cards = split_page(html)
        with self.lock:
            self.version += 1
            self.error = None
            self.main, self.cards = main, cards
            self.page = inject(html, self.version, cards)

    def failed(self, message: str) -> None:
        with self.lock:
            self.error = message

    def state(self) -> dict:
        with self.lock:
            return {"version": self.version, "error": self.error}

    def cards_json(self) -> dict:
        with self.lock:
            return {"version": self.version, "main": self.main, "cards": list(self.cards)}


def split_page(html: str) -> tuple[str, list[dict]]:
    """``<main>``'s inner HTML, and each top-level ``<section id=…>`` in it (the cards, the
    runs' panel) with a hash of its HTML (what the page compares to know which changed)."""
    start = html.find("<main")
    end = html.rfind("</main>")
    if start < 0 or end < 0:
        return "", []
    inner = html[html.index(">", start) + 1 : end]
    cards = []
    pos = 0
    tag = re.compile(r"<(/?)section\b[^>]*>", re.I)
    while True:
        m = tag.search(inner, pos)
        if m is None:
            break
        if m.group(1):
            pos = m.end()
            continue
        depth, close = 1, m.end()
        for t in tag.finditer(inner, m.end()):
            depth += -1 if t.group(1) else 1
            if depth == 0:
                close = t.end()
                break
        else:
            break
        head = m.group(0)
        ident = re.search(r'\bid="([^"]*)"', head)
        if ident:  # a card, or a panel beside them (the runs' table)
            text = inner[m.start() : close]
            cards.append({"id": ident.group(1), "hash": hashlib.sha256(text.encode()).hexdigest()[:16], "html": text})
        pos = close
    return inner, cards


def live_script() -> str:
    return resources.files("nnspec.output").joinpath("assets", "live.js").read_text(encoding="utf-8")


def inject(html: str, version: int, cards: list[dict]) -> str:
    """The page as served: the rendered page plus the live script (never in ``render``'s files)."""
    boot = json.dumps({"version": version, "cards": {c["id"]: c["hash"] for c in cards}}, sort_keys=True)
    script = f"<script>window.nnspecLive={boot.translate(_SCRIPT_ESCAPES)};</script><script>{live_script()}</script>"
    at = html.rfind("</body>")
    return html[:at] + script + html[at:] if at >= 0 else html + script


def _waiting_page() -> str:
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>nnspec serve</title></head>'
        '<body><p style="font-family:system-ui,sans-serif;padding:20px 28px">rendering the dashboard…</p></body></html>'
    )
    return inject(page, 0, [])


# -- HTTP ------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restart right after Ctrl-C; a port someone listens on is still refused
    allow_reuse_port = False  # never share the port with another listener


def _handler(live: Live):
    class Handler(BaseHTTPRequestHandler):
        server_version = "nnspec"

        def do_GET(self) -> None:
            port = getattr(self.server, "server_port", None)  # set when it bound
            host = (self.headers.get("Host") or "").strip().lower()
            if host not in (f"{HOST}:{port}", f"localhost:{port}"):
                self._send(403, "text/plain; charset=utf-8", b"nnspec serve answers requests for this host only\n")
                return
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                with live.lock:
                    page = live.page
                self._send(200, "text/html; charset=utf-8", page.encode("utf-8"))
            elif path == "/api/state":
                self._json(live.state())
            elif path == "/api/cards":
                self._json(live.cards_json())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _json(self, obj) -> None:
            self._send(200, "application/json", json.dumps(obj).encode("utf-8"))

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the page went away mid-answer
                pass

        def log_message(self, format, *args) -> None:  # quiet: a poll a second per open page
            pass

    return Handler


# -- the command -----------------------------------------------------------------------------
def serve(
    spec: str,
    port: int = DEFAULT_PORT,
    runs=(),
    vars=None,
    values_files=(),
    interval: float = POLL_SECONDS,
    out=None,
    err=None,
) -> int:
    """Serve ``spec``'s dashboard until Ctrl-C (exit code 0); a port in use is exit code 1.

    ``runs``: run directories or globs (``runs/*``), matched again before every render: a run
    created after the server started is drawn, a removed one is dropped."""
    from nnspec.cli.main import run_dirs
    from nnspec.cli.watch import watch

    out = out or sys.stdout
    err = err or sys.stderr
    live = Live()
    try:
        server = _Server((HOST, port), _handler(live))
    except OSError as e:
        text = port_in_use(port) if e.errno == errno.EADDRINUSE else cannot_listen(port, e.strerror or str(e))
        print(text, file=err, flush=True)
        return 1
    url = f"http://{HOST}:{server.server_address[1]}/"
    print(serving(spec, url), file=out, flush=True)

    def once() -> None:
        from nnspec.pipeline import render

        started = time.monotonic()
        try:
            dash = render(spec, runs=run_dirs(runs), vars=vars, values_files=values_files)
            html = dash.html()
        except NnspecError as e:
            live.failed(str(e))
            raise
        except Exception as e:  # our bug, or the model's: the banner says so; the watch goes on
            live.failed(f"internal error: {type(e).__name__}: {e}")
            raise
        live.done(html)
        print(rendered(live.version, time.monotonic() - started), file=err, flush=True)

    said: list[str] = []

    def say(text: str) -> None:
        if text.startswith("watching "):  # once: every render would repeat it
            if said:
                return
            said.append(text)
        print(text, file=err, flush=True)

    stop = threading.Event()
    context = contextvars.copy_context()  # --root's confinement holds in the render thread too
    worker = threading.Thread(
        target=context.run,
        args=(watch, spec, once, say, stop.is_set, interval, vars, values_files, tuple(runs)),
        name="nnspec-render",
        daemon=True,
    )
    worker.start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    worker.join(2)
    print("stopped", file=err, flush=True)
    return 0
