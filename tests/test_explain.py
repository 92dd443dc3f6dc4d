"""EXPLAIN's figures against what a capture holds."""

from __future__ import annotations

import re

import pytest

import nnspec
from nnspec.numerics import batched
from nnspec.pipeline import plan
from tests.conftest import ROOT

SPEC = f"{ROOT}/tests/cases/stats-table/spec.yaml"


def _held(text: str) -> float:
    m = re.search(r"holds a copy of the \d+ tensor\(s\) reduced .* ~([0-9.]+) (B|KiB|MiB)", text)
    assert m, text
    return float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": 1024**2}[m.group(2)]


def test_explain_says_what_the_gpu_path_holds_during_a_pass(monkeypatch):
    """The copies the deferred (GPU) path keeps until the end of the pass, measured on the
    CPU with NNSPEC_REDUCE=deferred: the most it held equals EXPLAIN's figure."""
    said = _held(plan(SPEC).explain())
    monkeypatch.setenv(batched.ENV, "deferred")
    seen: list[int] = []
    flush = batched.Deferred.flush

    def counted(self):
        seen.append(self.kept_bytes)
        return flush(self)

    monkeypatch.setattr(batched.Deferred, "flush", counted)
    nnspec.render(SPEC)
    assert seen and max(seen) == pytest.approx(said, rel=0.05)  # EXPLAIN rounds to 0.1 KiB
