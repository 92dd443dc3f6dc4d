"""One colour per layer type and per run across the charts of a dashboard."""

from __future__ import annotations

from nnspec.output import colors


def _chart(field, values, scheme="tableau20"):
    return {
        "data": {"values": [{field: v, "x": i} for i, v in enumerate(values)]},
        "mark": "bar",
        "encoding": {"color": {"field": field, "type": "nominal", "scale": {"scheme": scheme}}},
        "usermeta": {"nnspec": {"kind": "bar", "colors": [{"field": field}]}},
    }


def test_types_share_colours_across_charts():
    a = _chart("type", ["Linear", "ReLU"])
    b = {"layer": [_chart("type", ["Conv2d", "Linear"])], "usermeta": a["usermeta"]}
    pal = colors.palettes([a, b, None])
    assert list(pal["type"]) == ["Linear", "ReLU", "Conv2d"]
    ua, ub = colors.unify(a, pal), colors.unify(b, pal)
    sa = ua["encoding"]["color"]["scale"]
    sb = ub["layer"][0]["encoding"]["color"]["scale"]
    assert sa == sb and "scheme" not in sa
    assert dict(zip(sa["domain"], sa["range"]))["Linear"] == pal["type"]["Linear"]
    assert ua["usermeta"]["nnspec"]["palette"] == pal["type"]
    assert a["encoding"]["color"]["scale"] == {"scheme": "tableau20"}  # the input is not modified
    assert "palette" not in a["usermeta"]["nnspec"] and ua["data"]["values"] is a["data"]["values"]  # rows shared


def test_runs_follow_the_run_order():
    ridge = _chart("run", ["b", "a"])  # a chart that met the runs in another order
    pal = colors.palettes([ridge], runs=["a", "b"])
    assert list(pal["run"]) == ["a", "b"]
    assert colors.unify(ridge, pal)["encoding"]["color"]["scale"]["domain"] == ["a", "b"]


def test_undeclared_charts_are_left_alone():
    plain = {"mark": "bar", "encoding": {"color": {"field": "type", "type": "nominal"}}}
    assert colors.unify(plain, colors.palettes([plain])) is plain
