"""The query language's vocabulary (nnspec.query.catalog) against every
registry that implements it: the grammar, execute's transforms, numerics'
reductions, the marks' visitors and execute's activation functions."""

from __future__ import annotations

import re

import pytest
import torch

from nnspec.compiler.plan import CAPTURE_KINDS
from nnspec.errors import SpecError
from nnspec.execute.functions import ACTIVATIONS, MODULE_NAMES
from nnspec.execute.transforms import TRANSFORMS as EXECUTE_TRANSFORMS
from nnspec.marks import NATURAL, VISITORS
from nnspec.numerics.reductions import REDUCTIONS
from nnspec.query import catalog, messages
from nnspec.query.parser import grammar_text, parse


def _grammar_sources() -> tuple[set[str], set[str]]:
    """The grammar's KIND terminal, and the sources its ``source`` rule spells out."""
    text = grammar_text()
    kinds = set(re.findall(r'"(\w+)"', re.search(r"^KIND: (.*)$", text, flags=re.M).group(1)))
    rule = re.search(r"^source: (.*?)\n\n", text, flags=re.M | re.S).group(1)
    first = [alt.split("->")[0].split()[0] for alt in rule.split("|")]
    assert "KIND" in first
    return kinds, {f.strip('"') for f in first if f != "KIND"}


def test_sources_are_the_grammars():
    kinds, others = _grammar_sources()
    assert kinds == {s.name for s in catalog.SOURCES.values() if s.of is not None}
    assert others == {s.name for s in catalog.SOURCES.values() if s.of is None}
    assert set(catalog.SOURCE_KINDS) == kinds | others


def _query(source: catalog.SourceKind) -> str:
    if source.of is not None:
        return f"{source.name} of *"
    return "function relu over [-1, 1]" if source.name == "function" else source.name


@pytest.mark.parametrize("source", list(catalog.SOURCES.values()), ids=list(catalog.SOURCES))
def test_over_steps_is_what_the_parser_accepts(source):
    text = _query(source) + " over steps"
    if source.over_steps:
        q = parse(text)
        assert q.over_steps and q.source.kind == source.name
    else:
        with pytest.raises(SpecError) as e:
            parse(text)
        assert e.value.message == messages.not_over_steps(source.name, catalog.OVER_STEPS_KINDS)


def test_sources_capture_kinds_are_the_plans():
    for s in catalog.SOURCES.values():
        assert s.capture is None or s.capture in CAPTURE_KINDS, s.name
        assert (s.capture is None) == (s.name in ("graph", "summary", "function", "loss", "scalars")), s.name


def test_transforms_are_executes():
    assert set(EXECUTE_TRANSFORMS) == set(catalog.TRANSFORMS)
    assert all(callable(fn) for fn in EXECUTE_TRANSFORMS.values())


def test_reductions_are_numerics():
    assert set(catalog.REDUCTION_NAMES) == set(REDUCTIONS)
    for name, r in REDUCTIONS.items():
        assert r.name == name
        assert r.args == catalog.TRANSFORMS[name].args
        assert r.dim == ("dim" in catalog.TRANSFORMS[name].arg_names)
        # what compile pushes into a hook, the recorder must be able to record and merge
        assert not r.pushdown or r.combines, name


def test_transform_defaults_are_of_their_types():
    for t in catalog.TRANSFORMS.values():
        for a in t.args:
            assert a.default is None or a.type.check(a.default), (t.name, a.name)


def test_marks_are_the_visitors():
    assert set(VISITORS) == set(catalog.MARKS)
    assert all(callable(v) for v in VISITORS.values())
    assert set(NATURAL.values()) <= set(catalog.MARKS)  # a query without a mark gets one of these
    encodings = set(catalog.ENCODINGS)
    for m in catalog.MARKS.values():
        assert set(m.encodings) <= encodings, m.name


def test_a_step_is_a_transform_or_a_mark_and_argument_names_do_not_clash():
    for t in catalog.TRANSFORMS.values():
        assert not set(t.arg_names) & set(catalog.ENCODING_NAMES), t.name  # histogram(bins=9, log=true) splits them
    assert set(catalog.TRANSFORMS) & set(catalog.MARKS) == {"histogram"}


def test_functions_are_the_registry():
    assert set(ACTIVATIONS) == set(catalog.FUNCTIONS)
    x = torch.linspace(-3, 3, 25)
    for name, a in ACTIVATIONS.items():
        assert a.fn is getattr(torch.nn.functional, name)  # `function NAME` is torch.nn.functional's NAME
        for module in a.modules:
            assert MODULE_NAMES[module] == name
            assert torch.allclose(getattr(torch.nn, module)()(x), a.fn(x)), module  # the module computes it
