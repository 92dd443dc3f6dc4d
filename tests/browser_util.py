"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) with the
network blocked, shared by every browser test: ``browser`` (a module fixture)
and ``open_page`` (a page opened from a file or a 127.0.0.1 URL, its console
errors and the requests it tried to send out)."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("NNSPEC_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def available() -> bool:
    return os.path.exists(CHROMIUM) or shutil.which("chromium") is not None


def require():
    """Skip the calling module unless Chromium and Playwright are installed; Playwright's sync API."""
    if not available():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


def launch(sync_api):
    """A context manager yielding a launched browser."""
    import contextlib

    @contextlib.contextmanager
    def run():
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                yield b
            finally:
                b.close()

    return run()


LOCAL = ("file://", "http://127.0.0.1", "http://localhost")


def open_page(browser, target, wait_charts: bool = True, color_scheme: str | None = None):
    """``target``: a path (opened as file://) or an http://127.0.0.1 URL. Returns
    (page, console errors, blocked requests); only local requests go through."""
    page = browser.new_page(color_scheme=color_scheme) if color_scheme else browser.new_page()
    errors, blocked = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    url = str(target)
    page.goto(url if url.startswith("http") else "file://" + os.path.abspath(url))
    if wait_charts:
        page.wait_for_function(
            "[...document.querySelectorAll('[data-spec]')].every(e => e.dataset.rendered)", timeout=30_000
        )
    return page, errors, blocked
