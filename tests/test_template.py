"""Templating: vars, ${…}, --set/-f precedence, extends, repeat, x-*, and errors in the right file."""

from __future__ import annotations

import os
import textwrap

import pytest

import nnspec
from nnspec.cli.main import main
from nnspec.errors import SpecError
from nnspec.spec.load import load_spec
from tests.conftest import ROOT

MODEL = 'model: {factory: "tests.fixtures.models:make_tiny_mlp"}\ninput: {random: {shape: [4, 4]}}\nloss: sum\n'


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_whole_values_keep_their_type_and_text_is_interpolated(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """\
        nnspec: 1
        vars: {layer: fc1, bins: 7, budget: 3000, who: {name: team}}
        title: "${layer} of ${who.name}, $$5 and ${missing:-a default}"
        model: {factory: "tests.fixtures.models:make_tiny_mlp"}
        views:
          - query: weights of ${layer} | histogram(bins=${bins})
            max_marks: ${budget}
        """,
    )
    spec = load_spec(path)
    assert spec.title == "fc1 of team, $5 and a default"
    assert spec.views[0].query == "weights of fc1 | histogram(bins=7)"
    assert spec.views[0].max_marks == 3000  # an int, not "3000": the schema would reject a string


def test_precedence_spec_then_extends_then_files_then_set(tmp_path):
    write(tmp_path, "base.yaml", "nnspec: 1\nvars: {a: base, b: base, c: base, d: base}\n")
    path = write(
        tmp_path,
        "s.yaml",
        "nnspec: 1\nextends: base.yaml\nvars: {b: spec, c: spec, d: spec}\n" + MODEL
        + 'title: "${a} ${b} ${c} ${d}"\nviews: [{query: summary}]\n',
    )  # fmt: skip
    f1 = write(tmp_path, "v1.yaml", "c: file1\nd: file1\n")
    f2 = write(tmp_path, "v2.yaml", "d: file2\n")
    assert load_spec(path).title == "base spec spec spec"
    assert load_spec(path, values_files=[f1]).title == "base spec file1 file1"
    assert load_spec(path, values_files=[f1, f2]).title == "base spec file1 file2"
    assert load_spec(path, values_files=[f1, f2], vars={"d": "set", "a": 3}).title == "3 spec file1 set"


def test_extends_deep_merges_maps_replaces_lists_and_merges_views_by_id(tmp_path):
    os.makedirs(tmp_path / "team")
    write(
        tmp_path,
        "team/base.yaml",
        """\
        nnspec: 1
        title: base
        model: {factory: "tests.fixtures.models:make_tiny_mlp", kwargs: {}, seed: 3}
        input: {random: {shape: [4, 4], seed: 1}}
        loss: sum
        views:
          - {id: w, title: weights, query: weights of fc1 | heatmap}
          - {id: g, title: grads, query: grads of *.weight | norm}
        """,
    )
    path = write(
        tmp_path,
        "s.yaml",
        """\
        nnspec: 1
        extends: team/base.yaml
        input: {random: {shape: [6, 4]}}
        views:
          - {id: g, query: grads of fc2.weight | norm}
          - {title: extra, query: summary}
        """,
    )
    spec = load_spec(path)
    assert spec.title == "base" and spec.model.seed == 3  # kept from the base
    assert spec.data["input"]["random"] == {"shape": [6, 4], "seed": 1}  # maps merge, lists replace
    assert [(v.id, v.title, v.query) for v in spec.views] == [
        ("w", "weights", "weights of fc1 | heatmap"),
        ("g", "grads", "grads of fc2.weight | norm"),  # merged by id in its place
        (None, "extra", "summary"),  # appended
    ]


def test_an_extends_cycle_names_the_chain(tmp_path):
    write(tmp_path, "a.yaml", "nnspec: 1\nextends: b.yaml\n")
    write(tmp_path, "b.yaml", "nnspec: 1\nextends: a.yaml\n")
    with pytest.raises(SpecError) as e:
        load_spec(str(tmp_path / "a.yaml"))
    assert "cycle" in e.value.message and "a.yaml → " in e.value.message and "b.yaml → " in e.value.message
    assert e.value.span.file.endswith("b.yaml") and e.value.span.line == 2


def test_errors_point_into_the_file_that_holds_the_mistake(tmp_path, capsys):
    write(
        tmp_path,
        "base.yaml",
        """\
        nnspec: 1
        views:
          - query: weights of fc1 | heatmap
          - query: weights of fc1 | heatmpa
        """,
    )
    path = write(tmp_path, "s.yaml", "nnspec: 1\nextends: base.yaml\n" + MODEL + "modle: {}\n")
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert e.value.span.file.endswith("s.yaml") and e.value.span.line == 6  # the unknown key, in s.yaml
    fixed = write(tmp_path, "t.yaml", "nnspec: 1\nextends: base.yaml\n" + MODEL)
    dash = nnspec.render(fixed)
    bad = dash.views[1].error
    assert "base.yaml:4:29: error" in bad and "did you mean 'heatmap'" in bad  # the query's column, in base.yaml
    path = write(tmp_path, "u.yaml", "nnspec: 1\n" + MODEL + "views:\n  - query: weights of ${layr} | heatmap\n")
    assert main(["plan", path]) == 1
    err = capsys.readouterr().err
    assert "u.yaml:6:" in err and "unknown variable '${layr}'" in err


def test_repeat_over_a_list_and_over_the_modules_a_selector_matches(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        "nnspec: 1\nvars: {layers: [fc1, fc2]}\n" + MODEL
        + """\
views:
  - id: w
    title: ${layer} weights
    repeat: {layer: "${layers}"}
    query: weights of ${layer} | heatmap
  - title: ${m} activations
    repeat: {m: type(Linear)}
    columns: 2
    query: activations of ${m} | histogram
""",
    )  # fmt: skip
    dash = nnspec.render(path)
    assert [(v.title, v.query) for v in dash.views] == [
        ("fc1 weights", "weights of fc1 | heatmap"),
        ("fc2 weights", "weights of fc2 | heatmap"),
        ("fc1 activations", "activations of fc1 | histogram"),
        ("fc2 activations", "activations of fc2 | histogram"),
    ]
    assert all(v.error is None for v in dash.views)
    assert dash.views[2].group == dash.views[3].group and dash.views[2].columns == 2
    assert 'class="group" style="grid-template-columns:repeat(2' in dash.html()


def test_x_keys_hold_anchors_and_are_ignored(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        "nnspec: 1\n" + MODEL
        + "x-size: &size {width: 300, height: 120}\nviews:\n  - {query: weights of fc1 | heatmap, x-note: mine, <<: *size}\n",
    )  # fmt: skip
    spec = load_spec(path)
    assert (spec.views[0].width, spec.views[0].height) == (300, 120)
    assert "x-size" not in spec.data and "x-note" not in spec.data["views"][0]


def test_cli_set_and_values_files_and_resolve(tmp_path, capsys):
    path = write(
        tmp_path, "s.yaml", "nnspec: 1\nvars: {layer: fc1}\n" + MODEL + "views:\n  - query: weights of ${layer}\n"
    )
    values = write(tmp_path, "v.yaml", "layer: fc9\n")
    assert main(["resolve", path, "-f", values, "--set", "layer=fc2"]) == 0
    out = capsys.readouterr().out
    assert "query: weights of fc2" in out and "vars" not in out
    assert main(["resolve", path, "--set", "oops"]) == 1
    assert "--set 'oops': expected name=value" in capsys.readouterr().err
    assert main(["render", path, "-o", str(tmp_path / "o"), "-q", "--set", "layer=fc2"]) == 0


def test_the_team_specs_render(tmp_path):
    for name in ("mlp", "cnn"):
        dash = nnspec.render(os.path.join(ROOT, "specs", "team", f"{name}.yaml"))
        assert all(v.error is None for v in dash.views), [v.error for v in dash.views if v.error]
        ids = [v.title for v in dash.views]
        assert any(t.endswith(" weights") for t in ids)


def test_editors_see_no_false_errors_in_the_shipped_specs():
    """What yaml-language-server does with the modeline: the raw file against the schema,
    templated values (${lr}) and views that extend a base view by id included."""
    import glob
    import json

    import jsonschema
    import yaml

    schema = json.load(open(os.path.join(ROOT, "nnspec", "spec", "schema.json")))
    validator = jsonschema.Draft7Validator(schema)
    paths = glob.glob(os.path.join(ROOT, "specs", "*.yaml")) + glob.glob(os.path.join(ROOT, "specs", "team", "*.yaml"))
    for path in paths:
        text = open(path).read()
        assert text.startswith("# yaml-language-server: $schema="), path
        target = text.split("$schema=", 1)[1].split("\n", 1)[0]
        assert os.path.exists(os.path.join(os.path.dirname(path), target)), path
        assert [e.message for e in validator.iter_errors(yaml.safe_load(text))] == [], path
    assert list(validator.iter_errors({"nnspec": 1, "views": [{"query": "x", "max_marks": "lots"}]}))
