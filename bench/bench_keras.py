"""Capture overhead on a small Keras 3 CNN (Conv2D → BatchNormalization → ReLU ×3,
a residual Add, pooling, Dense; batch 32 of 32×32×3): ``activations of * | stats``
against the plain eager call ``model(x, training=False)``, on the torch backend and
on JAX (one Keras backend per process: each runs in its own subprocess). Prints a
Markdown table of ratios measured side by side in one run.

    python bench/bench_keras.py [--repeats 9] [--backend torch|jax|both]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

QUERY = "activations of * | stats"


def cnn():
    import keras

    L = keras.layers
    x = keras.Input((32, 32, 3))
    h, skip = x, x
    for i, width in enumerate((16, 32, 32)):
        h = L.Conv2D(width, 3, padding="same", name=f"conv{i}")(h)
        h = L.ReLU(name=f"relu{i}")(L.BatchNormalization(name=f"bn{i}")(h))
        if i == 2:
            h = L.Add(name="add")([h, skip])
        skip = h
    h = L.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(x, L.Dense(10, name="head")(h), name="cnn")


def measure(repeats: int) -> dict:
    import keras
    import numpy as np
    import torch

    from bench.common import interleaved
    from nnspec.backends.base import Call
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.inputs.batch import Batch
    from nnspec.spec.load import load_spec

    keras.utils.set_random_seed(0)
    model = cnn()
    x = np.random.default_rng(0).normal(size=(32, 32, 32, 3)).astype("float32")
    native = x if keras.backend.backend() != "torch" else torch.from_numpy(x)
    batch = Batch(Call((torch.from_numpy(x),)))
    plan = compile_plan(load_spec({"nnspec": 1, "views": [{"query": QUERY}]}), model)

    def plain():
        out = model(native, training=False)
        np.asarray(out.detach() if hasattr(out, "detach") else out)

    t = interleaved({"plain": plain, "capture": lambda: capture.run(plan, model, batch)}, repeats=repeats)
    return {
        "backend": keras.backend.backend(),
        "layers": len(plan.hooked),
        "plain": t["plain"],
        "capture": t["capture"],
        "versions": f"keras {keras.__version__}, torch {torch.__version__}",
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="both", choices=("torch", "jax", "both"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.repeats)))
        return
    rows = []
    for kind in ("torch", "jax") if args.backend == "both" else (args.backend,):
        env = dict(os.environ, KERAS_BACKEND=kind, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
        cmd = [sys.executable, __file__, "--child", "--repeats", str(args.repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"CPU, {rows[0]['versions']}, batch 32×32×32×3, median of {args.repeats}\n")
    print("| Keras backend | query | layers | plain call | capture | time ÷ plain call |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        q = "`" + QUERY.replace("|", "\\|") + "`"
        ratio = r["capture"] / r["plain"]
        print(
            f"| {r['backend']} | {q} | {r['layers']} | {r['plain'] * 1e3:.1f} ms | {r['capture'] * 1e3:.1f} ms | {ratio:.2f}× |"
        )


if __name__ == "__main__":
    main()
