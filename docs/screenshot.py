"""Regenerate docs/quickstart-dashboard.png: render the quickstart and photograph
the dashboard in headless Chromium (network blocked). Run from the repo root."""

from __future__ import annotations

import os
import sys
import tempfile

from playwright.sync_api import sync_playwright

import nnspec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(spec: str = "specs/quickstart.yaml", png: str = "docs/quickstart-dashboard.png") -> None:
    with tempfile.TemporaryDirectory() as out:
        dash = nnspec.render(os.path.join(ROOT, spec), out=out)
        html = os.path.join(out, f"{dash.spec.name}.html")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=os.environ.get("NNSPEC_CHROMIUM", "/usr/bin/chromium"),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
            page.goto("file://" + html)
            page.wait_for_function("[...document.querySelectorAll('[data-spec]')].every(e => e.dataset.rendered)")
            page.screenshot(path=os.path.join(ROOT, png), full_page=True)
            browser.close()
    print(png)


if __name__ == "__main__":
    main(*sys.argv[1:])
