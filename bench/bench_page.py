"""The dashboard page in headless Chromium: how long a big page takes to load
and draw every chart, and how fluid the graph explorer is at full depth.

1. a 57-view spec on a ResNet-50-shaped model (torchvision's layout, the
   faithful copy in tests/vision_models.py): the architecture, the summary,
   the 53 conv weight histograms, activation stats and gradient norms;
   time from navigation until every chart has drawn (issue 13: under 2 s);
2. the same page's size, and the time of ``nnspec.render`` itself.

    python bench/bench_page.py [--repeats 3] [--width 16]

Needs Debian's chromium and Playwright (the test dependencies).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import nnspec  # noqa: E402
from tests import browser_util  # noqa: E402


def resnet50_spec(width: int) -> dict:
    return {
        "nnspec": 1,
        "title": "ResNet-50-shaped network, 57 views",
        "model": {"factory": "tests.vision_models:ResNet50ish", "kwargs": {"width": width}, "seed": 0},
        "input": {"random": {"shape": [2, 3, 64, 64], "seed": 0}},
        "loss": "sum",
        "views": [
            {"title": "Architecture", "query": "graph"},
            {"title": "Layer summary", "query": "summary"},
            {"title": "${conv} weights", "repeat": {"conv": "type(Conv2d)"}, "query": "weights of ${conv} | histogram"},
            {"title": "Activation statistics", "query": "activations of type(Bottleneck) | stats | table"},
            {"title": "Gradient norm per parameter", "query": "grads of * | norm | bar(log=true)"},
        ],
    }


def load_times(path: str, repeats: int) -> list[float]:
    sync_api = browser_util.require()
    out = []
    with browser_util.launch(sync_api) as browser:
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            t0 = time.perf_counter()
            page.goto("file://" + os.path.abspath(path))
            page.wait_for_function(
                "[...document.querySelectorAll('[data-spec]')].every(e => e.dataset.rendered)", timeout=60_000
            )
            out.append(time.perf_counter() - t0)
            page.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dash = nnspec.render(resnet50_spec(args.width), out=tmp)
        render_s = time.perf_counter() - t0
        assert dash.ok, [v.error for v in dash.views if v.error]
        path = os.path.join(tmp, "dashboard.html")
        size = os.path.getsize(path)
        times = load_times(path, args.repeats)
    print(f"views: {len(dash.views)}  page: {size / 1e6:.2f} MB  render: {render_s:.2f} s")
    print(
        f"load and draw every chart in Chromium: median {statistics.median(times):.2f} s  ({', '.join(f'{t:.2f}' for t in times)})"
    )


if __name__ == "__main__":
    main()
