"""expect: checks and nnspec check, on purpose-built models."""

from __future__ import annotations

import torch

import nnspec
from nnspec.cli.main import main
from nnspec.pipeline import check
from tests.helpers import spec

CHECKS = [
    "activations of act* | dead_fraction < 0.5",
    "weights of * | nan_count == 0",
    "grads of *.weight | norm > 1e-6",
]


def _spec(factory, expect=CHECKS, **kw):
    d = spec(["weights of fc1 | heatmap"], factory=factory, inp={"random": {"shape": [16, 4], "seed": 0}}, loss="sum")
    d["expect"] = expect
    d.update(kw)
    return d


def test_a_dead_layer_fails_and_says_which_layer_and_value():
    results = check(_spec("tests.fixtures.models:make_dead_layer"))
    dead, nan, grads = results
    assert not dead.passed and [(r[0], r[2]) for r in dead.failures] == [("act1", 1.0)]
    assert dead.line() == "FAIL  activations of act* | dead_fraction < 0.5: act1 = 1"
    assert nan.passed
    # no gradient reaches fc1 through the dead ReLU, and fc2 sees only zeros: both weight gradients are 0
    assert not grads.passed and [(r[0], r[2]) for r in grads.failures] == [("fc1.weight", 0.0), ("fc2.weight", 0.0)]


def test_a_healthy_model_passes_and_the_values_are_the_hand_computed_ones():
    d = _spec("tests.fixtures.models:make_tiny_mlp")
    (dead, nan, grads) = check(d)
    assert dead.passed and nan.passed and grads.passed
    from tests.helpers import model_and_batch

    model, batch = model_and_batch(d)
    a = model.act(model.fc1(batch.x))
    assert dead.values == [("act", None, float(((a > 0).sum(0) == 0).double().mean()))]


def test_nnspec_check_exits_1_on_failure_and_the_dashboard_shows_checks(tmp_path, capsys):
    import yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_spec("tests.fixtures.models:make_dead_layer")))
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  activations of act* | dead_fraction < 0.5: act1 = 1" in out and "1 of 3 checks pass" in out
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_spec("tests.fixtures.models:make_tiny_mlp")))
    assert main(["check", str(good)]) == 0
    dash = nnspec.render(str(bad))
    assert not dash.checks_ok and "Checks: 1 of 3 pass" in dash.html()


def test_check_errors_are_located_and_do_not_stop_the_others(tmp_path):
    results = check(
        _spec(
            "tests.fixtures.models:make_tiny_mlp",
            expect=[
                "weights of fc1 | norm",
                "weights of fc1 | stats < 1",
                "weights of fc1 | norm | bar < 3",
                "weights of fc1 | norm > 0",
            ],
        )
    )
    assert "needs a comparison" in results[0].error
    assert "one value per layer" in results[1].error and "a stats table" in results[1].error
    assert "draws nothing" in results[2].error
    assert results[3].passed
    dash = nnspec.render(spec(["weights of fc1 | norm < 3"], inp={"random": {"shape": [4, 4]}}))
    assert "belongs in an expect: check" in dash.views[0].error


def test_checks_over_steps_look_at_every_recorded_step(tmp_path):
    d = _spec(
        "tests.fixtures.models:make_tiny_mlp",
        expect=["loss over steps < 1e9", "grads of fc1.weight over steps | norm < 0"],
    )
    d["train"] = {"steps": 4, "record_every": 2, "optimizer": {"name": "sgd", "lr": 0.01}}
    loss, norm = check(d)
    assert loss.passed and [s for _, s, _ in loss.values] == [0, 2, 3]
    assert not norm.passed and [s for _, s, _ in norm.failures] == [0, 2, 3]
    assert "fc1.weight @ step 0 = " in norm.line()
    assert torch.isfinite(torch.tensor([v for _, _, v in norm.values])).all()
