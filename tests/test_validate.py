"""Every chart is checked against the Vega-Lite schema, fast (output/validate.py):
the fast check accepts what Altair accepts and refuses what it refuses."""

from __future__ import annotations

import copy

import altair as alt
import jsonschema
import pandas as pd
import pytest

from nnspec.output import validate

FRAME = pd.DataFrame({"bin_start": [0.0, 1.0], "bin_end": [1.0, 2.0], "count": [3, 4]})


def _chart():
    return (
        alt.Chart(alt.Data(values=FRAME.to_dict("records")))
        .mark_bar()
        .encode(
            x=alt.X(field="bin_start", type="quantitative"),
            x2=alt.X2(field="bin_end"),
            y=alt.Y(field="count", type="quantitative"),
        )
        .properties(title="counts")
    )


def test_a_valid_chart_gives_the_vega_lite_altair_gives():
    assert validate.vega_lite(_chart()) == _chart().to_dict()


def _altair_accepts(spec: dict) -> bool:
    try:
        alt.Chart.validate(spec)
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d["encoding"]["x"].update(type="quant"),  # not one of the enum's values
        lambda d: d["encoding"]["x"].update(bogus=1),  # a property the schema does not have
        lambda d: d.update(mark={"type": "barr"}),
        lambda d: d.update(width="wide"),
        lambda d: d["encoding"]["y"].update(scale={"type": "log", "domain": "x"}),
        lambda d: None,  # unchanged: both accept
    ],
)
def test_the_fast_check_agrees_with_altair(spoil):
    spec = _chart().to_dict()
    spoiled = copy.deepcopy(spec)
    spoil(spoiled)
    checker = validate._checker()
    assert checker is not None  # jsonschema-rs is a dependency
    assert checker.is_valid(spoiled) == _altair_accepts(spoiled)


def test_an_invalid_chart_raises_altairs_message():
    chart = _chart()
    chart.encoding.x.type = "quant"  # set after construction: nothing checked it yet
    with pytest.raises(Exception, match="quant"):
        validate.vega_lite(chart)


def test_without_jsonschema_rs_altair_validates(monkeypatch):
    monkeypatch.setattr(validate, "_checker", lambda: None)
    assert validate.vega_lite(_chart()) == _chart().to_dict()
    chart = _chart()
    chart.encoding.x.type = "quant"
    with pytest.raises(Exception, match="quant"):
        validate.vega_lite(chart)


def test_the_renamed_schema_resolves_every_reference():
    schema = validate.plain_refs(alt.Chart._rootschema)
    assert len(schema["definitions"]) == len(alt.Chart._rootschema["definitions"])

    def refs(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(x, list):
            for v in x:
                yield from refs(v)

    assert all(r[len(validate.REF) :] in schema["definitions"] for r in refs(schema))
