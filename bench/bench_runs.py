"""Many runs side by side: rendering a spec of three views over steps against
50 runs, against 1 run, and the time to open (validate) one run. Prints a
Markdown table.

Each run: an MLP 4-32-32-3 on iris trained ``--steps`` steps, recorded every
step (loss; gradient norms of every weight; stats of every activation; a
32-bin histogram of fc1's weights). One run is trained; the other 49 are
copies under other names (the numbers are the same; the reading is not).

    python bench/bench_runs.py [--repeats 3] [--runs 50] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnspec
from bench.common import human_bytes, interleaved
from nnspec.runs.store import FILE, Run

VIEWS = [
    "loss over steps",
    "grads of *.weight over steps | norm",
    "activations of * over steps | stats",
]
RECORDED = [*VIEWS, "weights of fc1 over steps | histogram(bins=32)"]
# 50 runs × 5 layers × 200 steps are 50,000 points: over a view's default budget (10,000 marks), so raised
MAX_MARKS = 100_000


def spec(views, steps=None, run=None) -> dict:
    d = {
        "nnspec": 1,
        "title": "many runs",
        "model": {"factory": "nnspec.models:MLP", "kwargs": {"sizes": [4, 32, 32, 3]}},
        "input": {
            "dataset": "iris",
            "features": ["sepalLength", "sepalWidth", "petalLength", "petalWidth"],
            "target": "species",
        },
        "loss": "cross_entropy",
        "views": [{"query": q, "max_marks": MAX_MARKS} for q in views],
    }
    if run is not None:
        d["train"] = {"steps": steps, "record_every": 1, "optimizer": {"name": "sgd", "lr": 0.1}, "run": run}
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="nnspec-bench-runs-")
    try:
        first = os.path.join(root, "run00")
        nnspec.render(spec(RECORDED, args.steps, first))
        dirs = [first]
        for i in range(1, args.runs):
            dirs.append(os.path.join(root, f"run{i:02d}"))
            shutil.copytree(first, dirs[-1])
        size = os.path.getsize(os.path.join(first, FILE))
        views = spec(VIEWS)

        def render(runs):
            dash = nnspec.render(views, runs=runs)
            bad = [v.error for v in dash.views if v.error]
            assert not bad, bad[0]
            return dash

        def open_one():
            Run(first).close()

        def open_and_scan():
            r = Run(first)
            r.first_nonfinite()
            r.close()

        t = interleaved(
            {"one": lambda: render(dirs[:1]), "many": lambda: render(dirs), "open": open_one, "scan": open_and_scan},
            repeats=args.repeats,
        )
        dash = render(dirs)
        legend = dash.views[0].vega_lite()
        rows = len(dash.views[2].data)
        t0 = time.perf_counter()
        frame = nnspec.open_run(first).frame()
        t_frame = time.perf_counter() - t0
        print(f"{args.runs} runs of {args.steps} recorded steps, each run.sqlite {human_bytes(size)}\n")
        print("| measure | seconds |")
        print("| --- | --- |")
        print(f"| render 3 views over steps, 1 run | {t['one']:.3f} |")
        print(f"| render 3 views over steps, {args.runs} runs | {t['many']:.3f} |")
        print(f"| ratio {args.runs} runs / 1 run | {t['many'] / t['one']:.1f}× |")
        print(f"| open (validate) one run | {t['open']:.4f} |")
        print(f"| open one run and verify every record (first_nonfinite) | {t['scan']:.4f} |")
        print(f"| open_run(run).frame() of one run ({len(frame):,} rows) | {t_frame:.4f} |")
        print(f"\nstats view: {rows:,} rows for {args.runs} runs; colour field: {_color(legend)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _color(vl: dict) -> str:
    enc = (vl.get("layer") or [vl])[-1].get("encoding", {})
    c = enc.get("color", {})
    return f"{c.get('field')} (scale {c.get('scale', {}) or 'default'}, legend {c.get('legend', 'default')})"


if __name__ == "__main__":
    main()
