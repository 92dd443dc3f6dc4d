"""Each plan rewrite alone against its golden fixture (tests/fixtures/rules/<rule>.txt)."""

from __future__ import annotations

import os

import pytest
import torch

from nnspec.compiler import rules
from nnspec.compiler.compile import compile_view
from nnspec.spec.load import load_spec
from tests.fixtures.models import TinyMLP
from tests.helpers import spec

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "rules")


def _cases():
    for name in rules.__all__:
        if name == "RULES":
            continue
        with open(os.path.join(HERE, f"{name}.txt"), encoding="utf-8") as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    query, expected = (p.strip() for p in line.split("=>"))
                    yield pytest.param(name, query, expected, id=f"{name}: {query}")


def _show(vp) -> str:
    reduce = {str(c.reduce) if c.reduce else "-" for c in vp.captures}
    (reduce,) = reduce  # every layer of a view is captured alike
    steps = " | ".join(str(s) for s in vp.transforms)
    return f"{reduce} ; {steps} ; {vp.mark or '-'}".replace(" ;  ;", " ; ;")


@pytest.mark.parametrize("rule,query,expected", list(_cases()))
def test_rule(rule, query, expected):
    torch.manual_seed(0)
    view = load_spec(spec([query])).views[0]
    vp = compile_view(view, TinyMLP(), (getattr(rules, rule),))
    assert vp.error is None, vp.error
    assert _show(vp) == expected


def test_every_rule_has_a_fixture():
    names = [n for n in rules.__all__ if n != "RULES"]
    assert sorted(names) == sorted(f[:-4] for f in os.listdir(HERE))
    assert {r.__name__ for r in rules.RULES} == set(names)
