"""Goldens: one folder per case under tests/cases/.

Valid cases hold ``expected.vl.json`` (the view's Vega-Lite) and ``plan.txt``
(the EXPLAIN); invalid ones hold ``expected.txt``, what ``nnspec render``
prints and its exit code. ``pytest --update-goldens`` rewrites them; review
the diff.
"""

from __future__ import annotations

import os

import pytest

import nnspec
from nnspec.cli import main

CASES = os.path.join(os.path.dirname(__file__), "cases")
ALL = sorted(os.listdir(CASES))
VALID = [c for c in ALL if not c.startswith("invalid-")]
INVALID = [c for c in ALL if c.startswith("invalid-")]


def _spec(case: str) -> str:
    return os.path.relpath(os.path.join(CASES, case, "spec.yaml"))


def _golden(path: str, actual: str, update: bool) -> None:
    if update or not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(actual)
        if not update:
            pytest.fail(f"golden {path} was missing and has been written; review it and rerun")
    with open(path, encoding="utf-8") as f:
        assert actual == f.read(), f"{path} differs (pytest --update-goldens rewrites it)"


@pytest.mark.parametrize("case", VALID)
def test_valid_case(case, update_goldens):
    dash = nnspec.render(_spec(case))
    (view,) = dash.views
    assert view.error is None, view.error
    _golden(os.path.join(CASES, case, "expected.vl.json"), view.to_json(indent=1), update_goldens)
    _golden(os.path.join(CASES, case, "plan.txt"), nnspec.plan(_spec(case)).explain() + "\n", update_goldens)


@pytest.mark.parametrize("case", INVALID)
def test_invalid_case(case, update_goldens, capsys, tmp_path):
    code = main(["render", _spec(case), "-o", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 1
    _golden(os.path.join(CASES, case, "expected.txt"), f"exit {code}\n{err}", update_goldens)
