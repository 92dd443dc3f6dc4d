"""``nnspec.integrations.keras.NnspecCallback`` on Keras' JAX backend records
everything it records on torch (loss, weights, update ratios, gradients,
activations and their gradients, non-trainable state), checked number by number
against a hand loop in JAX over the same data (tests/keras_jax_worker.py: a fresh
process, since KERAS_BACKEND is read when Keras is imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # each case imports JAX and Keras in a fresh process: about 10 s


def _worker(tmp_path, case: str) -> dict:
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    worker = os.path.join(ROOT, "tests", "keras_jax_worker.py")
    p = subprocess.run(
        [sys.executable, worker, ROOT, str(tmp_path), case], capture_output=True, text=True, env=env, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["mlp", "conv"])
def test_keras_fit_on_jax_records_what_a_hand_loop_gives(tmp_path, case):
    """mlp: record_every 2 over 12 steps; conv: channels-last Conv2D, BatchNorm's moving
    mean (fit's state, not the model's), steps_per_execution 2, record_every 3."""
    out = _worker(tmp_path, case)
    assert out["finished"] == "1"
    assert out["left"] == {"train_function_is_kerass": True, "patched": []}
    assert sorted(out["got"]) == sorted(out["hand"])  # every series, no more
    assert sorted(out["loss"], key=int) == sorted(out["hand_loss"], key=int)
    for step, want in out["hand_loss"].items():
        assert out["loss"][step] == pytest.approx(want, rel=1e-6)
    compared = 0
    for series, by_stat in out["hand"].items():
        for statistic, by_step in by_stat.items():
            got = out["got"][series][statistic]
            assert sorted(got, key=int) == sorted(by_step, key=int), series
            for step, want in by_step.items():
                assert got[step] == pytest.approx(want, rel=1e-4, abs=1e-7), (series, statistic, step)
                compared += 1
    assert compared > 50


def test_keras_fit_on_jax_that_raises_leaves_an_unfinished_run_and_keras_own_step(tmp_path):
    out = _worker(tmp_path, "raises")
    assert out["error"] == "the data broke"
    assert out["finished"] == "0" and out["loss"] == [0, 1, 2]
    assert out["train_function_is_kerass"] is True
