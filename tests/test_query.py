"""The query language: what parses, what it means, and how errors point."""

from __future__ import annotations

import pytest

from nnspec.errors import Span, SpecError
from nnspec.query import messages
from nnspec.query.ast import Glob, RegexSelector, TypeSelector
from nnspec.query.parser import parse
from nnspec.spec import messages as spec_messages


@pytest.mark.parametrize(
    "text",
    [
        "weights of fc1 | heatmap",
        "grads of *.weight | abs | mean | bar(x=layer)",
        "activations of layer1.*.conv2 [0, :16] | histogram(bins=40) | histogram(log=true)",
        "weights of type(Conv2d), /fc[0-9]/ except fc2 | flatten | heatmap(scheme=redblue)",
        "input_grads | abs",
        "output_grads of fc1 [0] | norm(dim=1)",
        "params of * | stats | table",
        "inputs of fc2 [::2] | downsample(max=100)",
        "biases of * | sample(n=5, seed=2) | box",
        "weights of fc1 | histogram(bins=4, range=[-1, 1.5])",
        "weights of fc1 | bar(x=layer, scheme='set 1')",
    ],
)
def test_round_trip(text):
    assert str(parse(text)) == text


def test_structure():
    q = parse("weights of type(Conv2d), /fc[0-9]/ except fc2 [0, 1:3] | abs | histogram(bins=9, log=true)")
    assert q.source.kind == "weights"
    inc = q.source.selector.include
    assert isinstance(inc[0], TypeSelector) and inc[0].name == "Conv2d"
    assert isinstance(inc[1], RegexSelector) and inc[1].pattern == "fc[0-9]"
    assert q.source.selector.exclude == (Glob("fc2", q.source.selector.exclude[0].span),)
    assert q.index.items == (0, (1, 3, None))
    assert [t.name for t in q.transforms] == ["abs", "histogram"]
    assert q.transforms[1].args == (("bins", 9),)
    assert q.mark.name == "histogram" and q.mark.args == (("log", True),)


def test_positional_arguments():
    q = parse("weights of fc1 | sample(20, 4)")
    assert q.transforms[0].args == (("n", 20), ("seed", 4))


def test_module_named_like_a_keyword_prefix():
    q = parse("weights of typewriter, exceptional")
    assert [str(a) for a in q.source.selector.include] == ["typewriter", "exceptional"]


def _error(text, span=None) -> SpecError:
    with pytest.raises(SpecError) as e:
        parse(text, span)
    return e.value


def test_unknown_step_suggests():
    e = _error("weights of fc1 | histgram")
    assert e.hint == spec_messages.did_you_mean("histogram")
    assert e.span.col == 18


def test_unknown_source_suggests():
    e = _error("weigts of fc1")
    assert e.hint == spec_messages.did_you_mean("weights")


def test_parse_error_column_inside_the_yaml_file():
    # the query sits at line 12, column 12 of a spec file
    e = _error("weights of fc1 [0 | abs", Span("specs/x.yaml", 12, 12))
    assert (e.span.line, e.span.col) == (12, 12 + 18)


def test_mark_must_be_last():
    assert _error("weights of fc1 | heatmap | abs").message == messages.mark_not_last("heatmap")


@pytest.mark.parametrize(
    "text,needle",
    [
        ("weights of fc1 | histogram(bins=0)", "bins=0"),
        ("weights of fc1 | mean(dims=1)", "no argument 'dims'"),
        ("weights of fc1 | histogram(range=[2, 1])", "low < high"),
        ("weights of fc1 | bar(log=3)", "true or false"),
        ("weights of fc1 | abs(3)", "takes none"),
    ],
)
def test_bad_arguments(text, needle):
    assert needle in _error(text).message


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("activations of fc1 [::0]", 21, messages.bad_index_step(0)),
        ("activations of fc1 [1:4:-1]", 21, messages.bad_index_step(-1)),
        (f"weights of fc1 [{10**30}]", 17, messages.index_too_large(str(10**30), 2**62)),
        (f"weights of fc1 [0, -{10**30}:]", 20, messages.index_too_large(f"-{10**30}", 2**62)),
        ("weights of fc1 | histogram(range=[-1e400, 1])", 35, messages.not_finite("-1e400")),
        ("function relu over [-1e999, 1]", 21, messages.not_finite("-1e999")),
    ],
)
def test_index_and_number_errors_point_at_them(text, col, message):
    """[::0], negative steps, indexes past int64 and non-finite numbers fail at parse
    time, located at the index or the number (never as a failed forward pass)."""
    with pytest.raises(SpecError) as e:
        parse(text, Span("s.yaml", 3, 10))
    assert e.value.message == message
    assert (e.value.span.line, e.value.span.col) == (3, 10 + col - 1)


def test_sample_n_is_capped():
    with pytest.raises(SpecError, match="sample"):
        parse("weights of fc1 | sample(n=100000000000000000000)")
    parse("weights of fc1 | sample(n=1000000, seed=4611686018427387904)")
