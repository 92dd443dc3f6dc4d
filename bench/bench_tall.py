"""Very tall charts export (issue 15, point 4): a horizontal bar chart of 400 parameters
with names as long as a ResNet's (``block12.downsample.weight``), exported as SVG, PNG
and PDF, in fresh processes, in turn: with vl-convert's fonts as nnspec loads them
(``fonts.prime_fonts``: every font but the installed faces that shadow vl-convert's
own in-memory Liberation Sans), and as vl-convert loads them by itself (every
installed font: ``FONTCONFIG_FILE`` set to the system's file, which nnspec leaves
alone). Prints seconds per format as min–max (median), and whether both drew the
same labels.

    python bench/bench_tall.py [--repeats 3] [--bars 400]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.bench_real import SYSTEM_FONTCONFIG  # noqa: E402
from bench.common import fmt_spread, load_average, spread  # noqa: E402

FORMATS = ("svg", "png", "pdf")
_TEXT = re.compile(r"<text\b[^>]*>([^<]*)</text>")


def tall_chart(bars: int) -> dict:
    """The Vega-Lite of ``params of * | norm | bar`` over ``bars`` parameters (a bar each)."""
    import torch

    import nnspec

    torch.manual_seed(0)
    blocks = OrderedDict(
        (f"block{i}", torch.nn.Sequential(OrderedDict(downsample=torch.nn.Linear(2, 2)))) for i in range(bars // 2)
    )
    dash = nnspec.render(
        {"nnspec": 1, "views": [{"query": "params of * | norm | bar"}]}, model=torch.nn.Sequential(blocks)
    )
    assert dash.ok, dash.views[0].error
    return dash.views[0].vega_lite()


def child(bars: int) -> None:
    """One process: the chart exported in each format; prints JSON seconds and the SVG's texts."""
    from nnspec.output.convert import convert

    spec = tall_chart(bars)
    convert({"mark": "point"}, "svg")  # the engine started and its fonts loaded: not in the times
    out: dict = {"seconds": {}}
    for fmt in FORMATS:
        t0 = time.perf_counter()
        drawn = convert(spec, fmt)
        out["seconds"][fmt] = time.perf_counter() - t0
        if fmt == "svg":
            out["texts"] = _TEXT.findall(drawn)
    print(json.dumps(out))


def run_child(bars: int, system_fonts: bool) -> dict:
    env = dict(os.environ)
    env.pop("FONTCONFIG_FILE", None)
    if system_fonts:
        env["FONTCONFIG_FILE"] = SYSTEM_FONTCONFIG
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--bars", str(bars)]
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bars", type=int, default=400)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.bars)
    if not os.path.exists(SYSTEM_FONTCONFIG):
        sys.exit(f"no {SYSTEM_FONTCONFIG}: vl-convert's own font loading cannot be chosen here")
    load = load_average()
    runs: dict = {"vl-convert's own fonts": [], "nnspec's fonts": []}
    for _ in range(args.repeats):
        for label in runs:
            runs[label].append(run_child(args.bars, label.startswith("vl-convert")))
    (before, after) = runs.values()
    same = all(r["texts"] == before[0]["texts"] for r in before + after)
    labels = sum(1 for t in after[0]["texts"] if t.startswith("block"))
    print(f"{args.bars} bars, {labels} axis labels, {len(after[0]['texts'])} SVG texts; load {load:.1f} at the start")
    print(f"same texts drawn by both: {'yes' if same else 'NO'}\n")
    print("| format | vl-convert's own fonts | nnspec's fonts | after ÷ before (medians) |")
    print("| --- | ---: | ---: | ---: |")
    for fmt in FORMATS:
        b, a = (spread([r["seconds"][fmt] for r in rs]) for rs in (before, after))
        print(f"| {fmt.upper()} | {fmt_spread(b, ' s')} | {fmt_spread(a, ' s')} | {a[0] / b[0]:.2f}× |")


if __name__ == "__main__":
    main()
