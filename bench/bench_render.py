"""Render costs, as ratios from one run:

1. a 4096×4096 nn.Linear weight heatmap: nnspec.render against the layer's own
   forward pass (batch 64), and the size of the chart's JSON;
2. HTML render per view: 100 weight-histogram views (no forward pass), the
   dashboard's page included;
3. PNG export per view of those views' charts: the process pool
   (``nnspec.output.convert.ExportPool``, workers started and their engines
   warmed inside the time) against the serial path in this process (engine
   warm), interleaved; and that the files are the same bytes;
4. end to end: ``nnspec render specs/quickstart.yaml`` against
   ``python -c "import torch, altair"`` (second run: the JS bundle is cached).

    python bench/bench_render.py [--repeats 3] [--views 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import nnspec  # noqa: E402
from bench.common import human_bytes, interleaved  # noqa: E402


def heatmap(repeats: int) -> list[str]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(4096, 4096)
    x = torch.randn(64, 4096)
    spec = {"nnspec": 1, "views": [{"query": "weights of 0 | heatmap"}]}
    model = torch.nn.Sequential(layer)

    def forward():
        with torch.no_grad():
            model(x)

    holder = {}

    def render():
        holder["dash"] = nnspec.render(spec, model=model)
        holder["json"] = holder["dash"].views[0].to_json()

    t = interleaved({"forward": forward, "render": render}, repeats=repeats)
    v = holder["dash"].views[0]
    return [
        "| 4096×4096 `weights of 0 \\| heatmap` | render ÷ forward (64×4096) | "
        f"{t['render'] / t['forward']:.1f}× | forward {t['forward'] * 1e3:.0f} ms, render {t['render'] * 1e3:.0f} ms |",
        f"| 4096×4096 heatmap JSON | size | {human_bytes(len(holder['json']))} | {len(v.data)} cells; {v.notes[0]} |",
    ]


def _histogram_views(n: int):
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(n)])
    spec = {"nnspec": 1, "views": [{"query": f"weights of {i} | histogram"} for i in range(n)]}
    return spec, model


def html_per_view(repeats: int, n: int) -> list[str]:
    spec, model = _histogram_views(n)

    def render():
        nnspec.render(spec, model=model).html()

    t = interleaved({"render": render}, repeats=repeats)["render"]
    return [f"| {n} weight-histogram views, HTML | render per view | {t / n * 1e3:.1f} ms | whole page {t:.2f} s |"]


def png_per_view(repeats: int, n: int) -> list[str]:
    from nnspec.output.convert import POOL_WORKERS, ExportPool, cores

    spec, model = _histogram_views(n)
    specs = [v.vega_lite() for v in nnspec.render(spec, model=model).views]
    workers = min(POOL_WORKERS, cores())  # a render leaves exports serial on busy cores; here both run
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    got = {}

    def export(k):
        def run():
            pool = ExportPool(k)
            for s in specs:
                pool.submit(s, ["png"])
            got[k] = [o[0][2] for o in pool.results()]

        return run

    t = interleaved({"serial": export(0), "pool": export(workers)}, repeats=repeats)
    same = "same bytes" if got[0] == got[workers] else "DIFFERENT BYTES"
    return [
        f"| {n} weight-histogram views, PNG | export per view, serial (engine warm) | {t['serial'] / n * 1e3:.1f} ms | |",
        f"| {n} weight-histogram views, PNG | export per view, pool of {workers} (start included) | "
        f"{t['pool'] / n * 1e3:.1f} ms | {t['pool'] / t['serial']:.2f}× serial; {same}; load {load:.1f} at the start |",
    ]


def end_to_end(repeats: int) -> list[str]:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as out:
        cmds = {
            "import": [sys.executable, "-c", "import torch, altair"],
            "render": [
                sys.executable,
                "-m",
                "nnspec",
                "render",
                os.path.join(ROOT, "specs", "quickstart.yaml"),
                "-o",
                out,
                "-q",
            ],
        }
        fns = {k: (lambda c=c: subprocess.run(c, check=True, env=env, capture_output=True)) for k, c in cmds.items()}
        t = interleaved(fns, repeats=repeats, warmup=1)
    return [
        f'| `nnspec render specs/quickstart.yaml` | ÷ `python -c "import torch, altair"` | {t["render"] / t["import"]:.2f}× | '
        f"import {t['import']:.2f} s, render {t['render']:.2f} s |"
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--views", type=int, default=100)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| case | measure | result | detail |")
    print("| --- | --- | ---: | --- |")
    lines = heatmap(args.repeats) + html_per_view(args.repeats, args.views) + png_per_view(args.repeats, args.views)
    for line in lines + end_to_end(args.repeats):
        print(line)


if __name__ == "__main__":
    main()
