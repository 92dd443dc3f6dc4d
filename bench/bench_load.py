"""Capture overhead quiet and under load, in one run: the forward pass with the
hooks of ``activations of * | stats`` (and ``| histogram(bins=50)``) against
the plain forward pass, first on a quiet machine, then with a busy-loop process
beside it (issue 15: reductions must not stall when another process uses the
cores). Each phase runs twice, interleaved: with nnspec's reductions on one
thread (``reduce.ONE_THREAD_MAX``, the default) and on torch's own thread
count (the behaviour before), so both are measured under the same load.

    python bench/bench_load.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bench_capture import QUERIES, models
from bench.common import bench_args, interleaved, sync
from nnspec.capture import run as capture
from nnspec.compiler.compile import compile_plan
from nnspec.inputs.batch import Batch
from nnspec.numerics import reduce
from nnspec.spec.load import load_spec


def _busy() -> None:
    while True:
        pass


def _phase(device, repeats: int) -> dict:
    """{(model, label): seconds} for the plain forward and each query, one thread and torch's threads."""
    out = {}
    one_thread = reduce.ONE_THREAD_MAX
    for name, (model, x) in models(device).items():
        model.eval()
        plans = {
            label: compile_plan(load_spec({"nnspec": 1, "views": [{"query": q}]}), model)
            for label, q in QUERIES.items()
        }

        def plain(model=model, x=x):
            with torch.no_grad():
                model(x)
            sync(device)

        def hooked(plan, threads, model=model, x=x):
            reduce.ONE_THREAD_MAX = one_thread if threads == "1 thread" else -1
            try:
                capture.run(plan, model, Batch.of(x))
                sync(device)
            finally:
                reduce.ONE_THREAD_MAX = one_thread

        fns = {"plain": plain}
        for label, plan in plans.items():
            for threads in ("1 thread", "torch's"):
                fns[(label, threads)] = lambda plan=plan, threads=threads: hooked(plan, threads)
        t = interleaved(fns, repeats=repeats)
        for k, v in t.items():
            out[(name, k)] = v
    return out


def main():
    args, device = bench_args()
    quiet = _phase(device, args.repeats)
    busy = mp.get_context("spawn").Process(target=_busy, daemon=True)
    busy.start()
    time.sleep(0.5)
    try:
        loaded = _phase(device, args.repeats)
    finally:
        busy.terminate()
        busy.join()
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()}")
    print(f"one busy-loop process beside it when loaded; ONE_THREAD_MAX = {reduce.ONE_THREAD_MAX}\n")
    print("| model | query | reductions on | quiet ÷ plain | loaded ÷ plain (loaded) | loaded ÷ quiet ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    names = list(dict.fromkeys(k[0] for k in quiet))
    for name in names:
        for label, q in QUERIES.items():
            for threads in ("1 thread", "torch's"):
                rq = quiet[(name, (label, threads))] / quiet[(name, "plain")]
                rl = loaded[(name, (label, threads))] / loaded[(name, "plain")]
                q_md = q.replace("|", "\\|")
                print(f"| {name} | `{q_md}` | {threads} | {rq:.2f}× | {rl:.2f}× | {rl / rq:.2f} |")
        print(f"| {name} | plain forward | – | {quiet[(name, 'plain')]:.3f} s | {loaded[(name, 'plain')]:.3f} s | – |")


if __name__ == "__main__":
    main()
