"""PNG export per view (issue 15: ≤ 20 ms on 2 cores): ``write_outputs(dash, out, ("png",))``
over a dashboard of N weight-histogram views (``bench_render._histogram_views``), divided by N.
Every variant runs in turn in each round (ABAB…: bench/common.py), quiet and then with a
busy-loop process beside it; each figure is min–max (median) ms per view over the rounds.

Variants (``--variants``, comma-separated):

- ``new``: this tree, as ``nnspec render`` runs it (this process draws, workers beside it).
- ``new-serial``: this tree, no workers.
- ``new-2workers``: this tree, two workers beside this process (whatever the cores).
- ``new-aria``: this tree with the PNG's SVG drawn with its ARIA attributes (``PNG_CONFIG`` off).
- ``old``: ``nnspec/output/convert.py`` at ``--baseline`` (a git revision, read with ``git
  archive``, or a folder holding that revision's ``nnspec/``; its workers run that package), as it ran: its pool only below a load
  of one per core, this process idle while its workers draw.
- ``old-serial``, ``old-pool``: that revision with no pool, and with its pool whatever the load.

    python bench/bench_png.py [--views 100] [--rounds 5] [--baseline 3312ffe] [--variants new,old]
        [--no-busy]

It also checks that every variant writes the same PNG bytes as ``new-serial``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import busy_beside, fmt_spread, interleaved_times, load_average, spread  # noqa: E402

DEFAULT = "new,new-serial,new-2workers,new-aria,old,old-serial,old-pool"


def old_convert(rev: str, folder: str):
    """``nnspec/output/convert.py`` at ``rev``, loaded from that revision's package in ``folder``
    (so that the workers it starts run that revision's ``--serve``)."""
    if os.path.isdir(os.path.join(rev, "nnspec")):  # a folder that holds that package already
        shutil.copytree(os.path.join(rev, "nnspec"), os.path.join(folder, "nnspec"))
    else:
        archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "nnspec"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    path = os.path.join(folder, "nnspec", "output", "convert.py")
    spec = importlib.util.spec_from_file_location("nnspec_convert_at_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variants(names: list[str], old) -> dict:
    """name → (ExportPool, pool_size, convert) that ``write`` runs with."""
    from nnspec.output import convert as new

    def no_aria(spec, fmt, version=None):
        saved = new.PNG_CONFIG
        new.PNG_CONFIG = None
        try:
            return new.convert(spec, fmt, version)
        finally:
            new.PNG_CONFIG = saved

    def no_aria_pool(workers, draw=None):  # its workers draw with PNG_CONFIG: only serial here
        return new.ExportPool(0, draw)

    table = {
        "new": (new.ExportPool, new.pool_size, new.convert),
        "new-serial": (new.ExportPool, lambda n: 0, new.convert),
        "new-2workers": (new.ExportPool, lambda n: 2, new.convert),
        "new-aria": (no_aria_pool, lambda n: 0, no_aria),
    }
    if old is not None:
        table |= {
            "old": (old.ExportPool, old.pool_size, old.convert),
            "old-serial": (old.ExportPool, lambda n: 0, old.convert),
            "old-pool": (old.ExportPool, lambda n: min(old.POOL_WORKERS, old.cores()), old.convert),
        }
    return {k: table[k] for k in names if k in table}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--baseline",
        default="3312ffe",  # the tree before this file's change to the export pool
        help="the 'old' variants: a git revision, or a folder holding its nnspec/",
    )
    ap.add_argument("--variants", default=DEFAULT)
    ap.add_argument("--no-busy", action="store_true", help="skip the run with a busy loop beside it")
    args = ap.parse_args()

    import nnspec
    from bench.bench_render import _histogram_views
    from nnspec.output import write

    names = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        old = old_convert(args.baseline, tmp) if any(n.startswith("old") for n in names) else None
        table = variants(names, old)
        spec, model = _histogram_views(args.views)
        dash = nnspec.render(spec, model=model)
        pngs: dict[str, list[bytes]] = {}

        def run(name: str):
            pool, size, draw = table[name]

            def export() -> None:
                saved = write.ExportPool, write.pool_size, write.convert
                write.ExportPool, write.pool_size, write.convert = pool, size, draw
                # a worker imports nnspec from its working folder first: the baseline's from its own
                os.chdir(tmp if name.startswith("old") else ROOT)
                try:
                    with tempfile.TemporaryDirectory() as out:
                        written = write.write_outputs(dash, out, ("png",))
                        pngs[name] = [open(p, "rb").read() for p in written]
                finally:
                    write.ExportPool, write.pool_size, write.convert = saved
                    os.chdir(ROOT)

            return export

        fns = {name: run(name) for name in table}
        print(f"{args.views} weight-histogram views, PNG only, {os.cpu_count()} cores; {args.rounds} rounds")
        print(f"baseline: {args.baseline}; ms per view, min–max (median)\n")
        print("| variant | quiet | busy loop beside |")
        print("| --- | ---: | ---: |")
        loads = {}
        runs = {}
        loads["quiet"] = load_average()
        runs["quiet"] = interleaved_times(fns, args.rounds)
        if not args.no_busy:
            with busy_beside():
                loads["busy"] = load_average()
                runs["busy"] = interleaved_times(fns, args.rounds)
        for name in fns:
            cells = [fmt_spread(spread([t / args.views * 1e3 for t in r[name]]), " ms", 1) for r in runs.values()]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print("\n1-minute load at the start of each run: " + ", ".join(f"{k} {v:.2f}" for k, v in loads.items()))
        ref = pngs.get("new-serial")
        for name, got in pngs.items():
            if ref is not None and got != ref:
                print(f"{name}: PNG BYTES DIFFER from new-serial")


if __name__ == "__main__":
    main()
