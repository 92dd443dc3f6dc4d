"""Goldens: one folder per case under tests/cases/.

Valid cases hold ``expected.vl.json`` (the view's Vega-Lite) and ``plan.txt``
(the EXPLAIN); invalid ones hold ``expected.txt``, what ``nnspec render``
prints and its exit code. ``pytest --update-goldens`` rewrites them; review
the diff.

The Vega-Lite goldens hold on any machine: their structure, strings, bools and
ints must be equal, their floats equal to float32 noise, and Altair's
content-hashed data set names are renamed alike on both sides
(tests.helpers.json_difference). The text goldens (plan.txt: shapes and byte
counts; expected.txt: messages) hold no machine-dependent floats and are
compared exactly.
"""

from __future__ import annotations

import json
import os
import random

import pytest

import nnspec
from nnspec.cli.main import main
from tests.helpers import canonical_dataset_names, json_difference

CASES = os.path.join(os.path.dirname(__file__), "cases")
ALL = sorted(os.listdir(CASES))
VALID = [c for c in ALL if not c.startswith("invalid-")]
INVALID = [c for c in ALL if c.startswith("invalid-")]


def _spec(case: str) -> str:
    return os.path.relpath(os.path.join(CASES, case, "spec.yaml"))


def _text_difference(expected: str, actual: str) -> str | None:
    if expected == actual:
        return None
    exp, act = expected.splitlines(), actual.splitlines()
    for i, (e, a) in enumerate(zip(exp, act)):
        if e != a:
            return f"line {i + 1}: expected {e!r}, got {a!r}"
    return f"expected {len(exp)} lines, got {len(act)}"


def _vega_lite_difference(expected: str, actual: str) -> str | None:
    return json_difference(canonical_dataset_names(json.loads(expected)), canonical_dataset_names(json.loads(actual)))


def _golden(path: str, actual: str, update: bool, difference=_text_difference) -> None:
    if update or not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(actual)
        if not update:
            pytest.fail(f"golden {path} was missing and has been written; review it and rerun")
    with open(path, encoding="utf-8") as f:
        diff = difference(f.read(), actual)
    assert diff is None, f"{path} differs at {diff} (pytest --update-goldens rewrites it)"


@pytest.mark.parametrize("case", VALID)
def test_valid_case(case, update_goldens):
    dash = nnspec.render(_spec(case))
    (view,) = dash.views
    assert view.error is None, view.error
    _golden(
        os.path.join(CASES, case, "expected.vl.json"), view.to_json(indent=1), update_goldens, _vega_lite_difference
    )
    _golden(os.path.join(CASES, case, "plan.txt"), nnspec.plan(_spec(case)).explain() + "\n", update_goldens)


@pytest.mark.parametrize("case", INVALID)
def test_invalid_case(case, update_goldens, capsys, tmp_path):
    code = main(["render", _spec(case), "-o", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 1
    _golden(os.path.join(CASES, case, "expected.txt"), f"exit {code}\n{err}", update_goldens)


def _hash(rng: random.Random) -> str:
    return "data-" + "".join(rng.choice("0123456789abcdef") for _ in range(32))


def _elsewhere(doc, rng: random.Random, rel: float):
    """``doc`` as another machine might print it: every float off by ``rel``
    relative, every data set renamed by a new hash (so listed in another order)."""
    names = {}

    def move(x):
        if isinstance(x, dict):
            return {move(k): move(v) for k, v in x.items()}
        if isinstance(x, list):
            return [move(v) for v in x]
        if isinstance(x, float):
            return x * (1 + rel * rng.choice((-1, 1)))
        if isinstance(x, str) and x.startswith("data-") and len(x) == 37:
            return names.setdefault(x, _hash(rng))
        return x

    return json.loads(json.dumps(move(doc), sort_keys=True))  # datasets listed by their new names


def test_golden_comparison_takes_float_noise_and_renamed_data_sets():
    rng = random.Random(0)
    for case in ("graph-residual", "conv-feature-map"):  # two data sets listed before the layers; one
        with open(os.path.join(CASES, case, "expected.vl.json"), encoding="utf-8") as f:
            doc = json.load(f)
        reordered = False
        for _ in range(5):
            moved = _elsewhere(doc, rng, 1e-7)
            assert moved != doc
            assert _vega_lite_difference(json.dumps(doc), json.dumps(moved)) is None
            sizes = [len(rows) for rows in moved["datasets"].values()]
            reordered |= sizes != [len(rows) for rows in doc["datasets"].values()]
        assert reordered or case != "graph-residual"  # the new hashes also list the data sets in another order


def test_golden_comparison_catches_a_real_change():
    a, b = _hash(random.Random(1)), _hash(random.Random(2))
    doc = {
        "datasets": {a: [{"layer": "fc1", "row": 0, "value": 0.207670391, "head": True}], b: [{"x": 0.5}]},
        "layer": [{"data": {"name": a}, "mark": {"type": "rect"}}, {"data": {"name": b}, "mark": {"type": "text"}}],
        "width": 288,
    }

    def changed(edit):
        d = json.loads(json.dumps(doc))
        edit(d)
        return _vega_lite_difference(json.dumps(doc), json.dumps(d))

    row = "$.datasets['data-0'][0]"
    assert changed(lambda d: d["datasets"][a][0].update(value=0.207670391 * (1 + 1e-7))) is None
    cases = [
        (
            lambda d: d["datasets"][a][0].update(value=0.207670391 * (1 + 1e-3)),
            f"{row}.value: expected 0.207670391, got 0.207878",
        ),
        (lambda d: d["datasets"][a][0].update(layer="fc2"), f"{row}.layer: expected 'fc1', got 'fc2'"),
        (lambda d: d["datasets"][a][0].update(row=1), f"{row}.row: expected 0, got 1"),
        (lambda d: d["datasets"][a][0].update(head=False), f"{row}.head: expected bool True, got bool False"),
        (lambda d: d["datasets"][a][0].update(row=0.0), f"{row}.row: expected int 0, got float 0.0"),
        (lambda d: d["datasets"][a][0].pop("layer"), f"{row}.layer: expected 'fc1', got no such key"),
        (lambda d: d.update(height=100), "$.height: expected no such key, got 100"),
        (lambda d: d["datasets"][a].append({"x": 1.0}), "$.datasets['data-0']: expected a list of 1, got a list of 2"),
        (lambda d: d["layer"][1]["data"].update(name=a), "$.layer[1].data.name: expected 'data-1', got 'data-0'"),
        (lambda d: d["layer"][0]["mark"].update(type="bar"), "$.layer[0].mark.type: expected 'rect', got 'bar'"),
    ]
    for edit, message in cases:
        diff = changed(edit)
        assert diff is not None and diff.startswith(message), (message, diff)
