"""Keras ``fit`` on JAX with ``nnspec.integrations.keras.NnspecCallback``, beside a hand
loop over the same data (``jax.value_and_grad`` over ``stateless_call``, plain SGD),
in a fresh process (KERAS_BACKEND is read when Keras is imported).

    python tests/keras_jax_worker.py ROOT OUT_DIR mlp|conv

Prints one JSON line: {"got": {series: {statistic: {step: value}}}, "hand": same,
"loss": {step: loss}, "hand_loss": ..., "finished": ..., "left": what fit left patched}.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, sys.argv[1])

import jax
import jax.numpy as jnp
import keras
import numpy as np

from nnspec.integrations.keras import NnspecCallback
from nnspec.runs.store import Run
from tests.helpers import spec

LR = 0.1
init = keras.initializers.GlorotUniform


def mlp():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, activation="relu", name="hidden", kernel_initializer=init(seed=0)),
         keras.layers.Dense(3, name="out", kernel_initializer=init(seed=1))]
    )  # fmt: skip


def conv():
    """Channels-last conv (its activations are handed on as N, C, H, W), BatchNorm (its
    moving statistics are non-trainable state that fit carries between steps)."""
    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv", kernel_initializer=init(seed=2))(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="out", kernel_initializer=init(seed=3))(h))


CASES = {
    "mlp": (mlp, (4,), "hidden", dict(record_every=2, epochs=2, steps_per_execution=1)),
    "conv": (conv, (6, 6, 2), "conv", dict(record_every=3, epochs=2, steps_per_execution=2)),
}


def main(out_dir: str, case: str) -> None:
    if case == "raises":
        return raises(out_dir)
    build, shape, tapped, how = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, *shape)).astype("float32")
    y = rng.normal(size=(24, 3)).astype("float32")
    model, hand = build(), build()
    hand.set_weights(model.get_weights())
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse", steps_per_execution=how["steps_per_execution"])
    plain_fn = None
    views = [
        "loss over steps",
        "weights of * over steps | stats",
        "weights of out.kernel over steps | update_ratio",
        "grads of * over steps | norm",
        f"activations of {tapped} over steps | stats",
        f"output_grads of {tapped} over steps | norm",
    ]
    if case == "conv":
        views.append("params of *.moving_mean over steps | stats")  # non-trainable: fit's state, not the model's
    run = os.path.join(out_dir, case)
    model.make_train_function()
    plain_fn = model.train_function
    cb = NnspecCallback(spec(views, loss=None), run=run, record_every=how["record_every"])
    model.fit(x, y, batch_size=4, epochs=how["epochs"], shuffle=False, verbose=0, callbacks=[cb])
    left = {
        "train_function_is_kerass": model.train_function is plain_fn,
        "patched": sorted(k for k in ("compute_loss_and_updates", "train_step") if k in vars(model))
        + sorted(k for k in ("stateless_apply",) if k in vars(model.optimizer))
        + [p for p, layer in ((la.name, la) for la in model.layers) if "call" in vars(layer)],
    }
    r = Run(run)
    got: dict = {}
    for row in r.frame().itertuples():
        if row.series != "loss":
            got.setdefault(row.series, {}).setdefault(row.statistic, {})[str(row.step)] = row.value
    loss = {str(k): v for k, v in dict(r.losses()).items()}
    finished = r.meta["finished"]
    r.close()
    hand_out, hand_loss = hand_loop(hand, x, y, tapped, how)
    print(json.dumps({"got": got, "hand": hand_out, "loss": loss, "hand_loss": hand_loss,
                      "finished": finished, "left": left}))  # fmt: skip


def hand_loop(model, x, y, tapped: str, how: dict):
    """Per recorded step what nnspec should have stored, computed with JAX directly."""
    every, steps = how["record_every"], how["epochs"] * (len(x) // 4)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    names = {id(v): f"{la.name}.{v.name}" for la in model.layers for v in la.weights}
    tnames = [names[id(v)] for v in model.trainable_variables]
    nnames = [names[id(v)] for v in model.non_trainable_variables if v.name == "moving_mean"]
    layer = model.get_layer(tapped)
    seen: dict = {}
    original = layer.call

    def tap(*a, **k):
        out = original(*a, **k)
        seen["out"] = out
        return out + seen.get("nudge", 0.0)

    object.__setattr__(layer, "call", tap)

    def loss_fn(tv, nudge, ntv, xb, yb):
        seen["nudge"] = nudge
        pred, ntv2 = model.stateless_call(tv, ntv, xb, training=True)
        return jnp.mean((pred - yb) ** 2), (ntv2, seen["out"])

    out: dict = {}
    losses: dict = {}
    prev = None
    for s in range(steps):
        i = (s % (len(x) // 4)) * 4
        xb, yb = jnp.asarray(x[i : i + 4]), jnp.asarray(y[i : i + 4])
        zero = jnp.zeros(model.get_layer(tapped).compute_output_shape((4, *x.shape[1:])))
        (loss, (ntv2, act)), (g, g_act) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            tv, zero, ntv, xb, yb
        )
        if prev is not None:
            ps, before = prev
            now = np.asarray(tv[tnames.index("out.kernel")], dtype="float64")
            put(out, "update out.kernel | update_ratio", "update_ratio", ps,
                np.linalg.norm(now - before) / np.linalg.norm(before))  # fmt: skip
            prev = None
        if s % every == 0:
            losses[str(s)] = float(loss)
            for name, v, gv in zip(tnames, tv, g):
                put(out, f"grad {name} | norm", "norm", s, np.linalg.norm(np.asarray(gv, dtype="float64")))
                if name.endswith(("kernel", "gamma")):  # weights: kernels and gammas, not biases
                    put(out, f"param {name} | stats", "mean", s, float(np.asarray(v, dtype="float64").mean()))
            moving = [v for v, w in zip(ntv, model.non_trainable_variables) if w.name == "moving_mean"]
            for name, v in zip(nnames, moving):
                put(out, f"param {name} | stats", "mean", s, float(np.asarray(v, dtype="float64").mean()))
            a = np.asarray(act, dtype="float64")
            put(out, f"activation {tapped} | stats", "mean", s, a.mean())
            put(out, f"activation {tapped} | stats", "max", s, a.max())
            put(out, f"output_grad {tapped} | norm", "norm", s, np.linalg.norm(np.asarray(g_act, dtype="float64")))
            prev = (s, np.asarray(tv[tnames.index("out.kernel")], dtype="float64"))
        tv = [v - LR * gv for v, gv in zip(tv, g)]
        ntv = ntv2
    if prev is not None:
        ps, before = prev
        now = np.asarray(tv[tnames.index("out.kernel")], dtype="float64")
        put(out, "update out.kernel | update_ratio", "update_ratio", ps,
            np.linalg.norm(now - before) / np.linalg.norm(before))  # fmt: skip
    object.__delattr__(layer, "call")
    return out, losses


def raises(out_dir: str) -> None:
    """A data pipeline that breaks at the fourth batch, fit inside the callback's with:
    the run is closed unfinished and fit's train function is Keras' own again."""
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(LR), loss="mse")
    model.make_train_function()
    plain_fn = model.train_function
    rng = np.random.default_rng(0)

    def batches():
        for i in range(6):
            if i == 3:
                raise ValueError("the data broke")
            yield rng.normal(size=(4, 4)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")

    run = os.path.join(out_dir, "raises")
    error = None
    try:
        with NnspecCallback(spec(["loss over steps", "grads of * over steps | norm"], loss=None), run=run,
                            record_every=1) as cb:  # fmt: skip
            model.fit(batches(), epochs=1, verbose=0, callbacks=[cb])
    except ValueError as e:
        error = str(e)
    r = Run(run)
    out = {"error": error, "finished": r.meta["finished"], "loss": sorted(dict(r.losses())),
           "train_function_is_kerass": model.train_function is plain_fn}  # fmt: skip
    r.close()
    print(json.dumps(out))


def put(out: dict, series: str, statistic: str, step: int, value) -> None:
    out.setdefault(series, {}).setdefault(statistic, {})[str(step)] = float(value)


if __name__ == "__main__":
    main(sys.argv[2], sys.argv[3])
