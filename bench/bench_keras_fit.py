"""Recording through ``nnspec.integrations.keras.NnspecCallback`` on Keras' JAX backend:
``fit`` on the small CNN of ``bench_keras.py`` (batch 32 of 32×32×3, 80 steps) with the
callback recording loss, weights, gradients and activations (stats and 64-bin
histograms) at every 10th step and at every step, against plain ``fit``, interleaved
in one process. The first ``fit`` of each kind is the warm-up (Keras' own compilation);
every timed ``fit`` with the callback includes compiling its recording step (a new
callback, a new function: what a user pays once per ``fit``).

    python bench/bench_keras_fit.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VIEWS = [
    "loss over steps",
    "weights of * over steps | stats",
    "grads of * over steps | stats",
    "grads of * over steps | histogram(bins=64)",
    "activations of * over steps | stats",
]
STEPS, BATCH = 80, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import keras
    import numpy as np

    from bench.bench_keras import cnn
    from nnspec.integrations.keras import NnspecCallback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(STEPS * BATCH,))
    model = cnn()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    spec = {"nnspec": 1, "views": [{"query": q} for q in VIEWS]}
    runs = tempfile.mkdtemp()

    def fit(every: int | None) -> float:
        cbs = (
            [] if every is None else [NnspecCallback(spec, run=f"{runs}/r{time.perf_counter_ns()}", record_every=every)]
        )
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False, callbacks=cbs)
        return time.perf_counter() - t0

    kinds = {"plain fit": None, "record_every=10": 10, "record_every=1": 1}
    for every in kinds.values():
        fit(every)  # compiles Keras' step, and the recording step once per callback
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for k, every in kinds.items():
            times[k].append(fit(every))
    base = sorted(times["plain fit"])[len(times["plain fit"]) // 2]
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, {STEPS} steps, {args.repeats} repeats\n")
    print("| fit | median s | ÷ plain (min–max) |\n| --- | ---: | ---: |")
    for k, ts in times.items():
        med = sorted(ts)[len(ts) // 2]
        print(f"| {k} | {med:.3f} | {med / base:.2f}× ({min(ts) / base:.2f}–{max(ts) / base:.2f}) |")


if __name__ == "__main__":
    main()
