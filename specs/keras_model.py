"""The quickstart's 2-3-1 network in Keras 3, on whatever backend Keras runs
(``KERAS_BACKEND=torch`` or ``jax``): ``keras.Sequential([Input((2,)), Dense(3, relu),
Dense(1)])`` with the weights the quickstart fit (``quickstart.pt``, made by
``train_quickstart.py``), copied in transposed, since a Keras kernel is (in, out).
Nothing global is set: no seed, no backend."""

from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def mlp(weights: str | None = "quickstart.pt"):
    import keras

    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(3, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ],
        name="mlp",
    )
    if weights:
        import torch

        sd = torch.load(os.path.join(HERE, weights), map_location="cpu", weights_only=True)
        model.set_weights([sd[k].T.numpy() if k.endswith("weight") else sd[k].numpy()
                           for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")])  # fmt: skip
    return model
