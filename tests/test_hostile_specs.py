"""Hostile and careless specs fail cleanly, located and bounded; a confined spec reads and
writes only under its root (guide §16)."""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pytest

import nnspec
from nnspec.cli.main import main
from nnspec.errors import NnspecError, SpecError
from nnspec.paths import confine
from nnspec.spec import messages
from nnspec.spec.load import load_spec
from nnspec.spec.yamlpos import MAX_DEPTH, NODE_BUDGET
from tests.test_spec_fuzz import BILLION_LAUGHS

HEAD = 'nnspec: 1\nmodel: {factory: "tests.fixtures.models:make_tiny_mlp"}\n'
VIEWS = "views: [{query: weights of fc1 | heatmap}]\n"


def spec_file(tmp_path, body: str | bytes, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return str(path)


def failure(path: str, **kw) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path, **kw)
    e = info.value
    assert e.span is not None and e.span.file and e.span.line >= 1, str(e)
    return e


# -- bytes and characters -------------------------------------------------------------
def test_bytes_that_are_not_utf8_are_located_at_their_line(tmp_path):
    path = spec_file(tmp_path, HEAD.encode() + b"title: caf\xe9\n" + VIEWS.encode())
    e = failure(path)
    assert (e.span.line, e.span.col) == (3, 11)
    assert e.message == messages.not_utf8(0xE9, len(HEAD) + 10)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f"])
def test_control_characters_are_located(tmp_path, char):
    e = failure(spec_file(tmp_path, HEAD + f"title: a{char}b\n" + VIEWS))
    assert (e.span.line, e.span.col) == (3, 9)
    assert e.message == messages.bad_character(ord(char))
    assert char not in str(e)  # never sent to the terminal as it is


# -- tags -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, tag",
    [
        ("!!python/object/apply:os.system ['echo pwned']", "!!python/object/apply:os.system"),
        ("!!python/name:os.system", "!!python/name:os.system"),
        ("!custom 1", "!custom"),
        ("!!binary aGk=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!omap [a: 1]", "!!omap"),
    ],
)
def test_tags_beyond_plain_values_are_refused_where_they_stand(tmp_path, value, tag):
    e = failure(spec_file(tmp_path, HEAD + f"title: {value}\n" + VIEWS))
    assert e.message == messages.bad_tag(tag)
    assert (e.span.line, e.span.col) == (3, 8)


def test_a_bad_value_of_a_core_tag_is_located(tmp_path):
    e = failure(spec_file(tmp_path, HEAD + "train: {steps: !!int abc}\n" + VIEWS))
    assert e.message == messages.bad_tagged_value("!!int", "abc")
    assert e.span.line == 3


def test_core_tags_and_dates_still_read(tmp_path):
    spec = load_spec(spec_file(tmp_path, HEAD + "title: !!str 5\ndescription: 2024-01-01\n" + VIEWS))
    assert (spec.title, spec.description) == ("5", "2024-01-01")


# -- nesting and aliases ----------------------------------------------------------------
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 3000])
def test_deep_nesting_is_a_located_error(tmp_path, depth):
    e = failure(spec_file(tmp_path, HEAD + "x-deep: " + "[" * depth + "]" * depth + "\n" + VIEWS))
    assert e.message == messages.too_deep(MAX_DEPTH)
    assert e.span.line == 3


def test_nesting_within_the_limit_reads(tmp_path):
    load_spec(spec_file(tmp_path, HEAD + "x-deep: " + "[" * 90 + "]" * 90 + "\n" + VIEWS))


@pytest.mark.parametrize("value", ["&a [*a]", "&a {b: *a}", "&a [[1, *a]]"])
def test_recursive_aliases_are_located(tmp_path, value):
    e = failure(spec_file(tmp_path, HEAD + f"x-loop: {value}\n" + VIEWS))
    assert e.message == messages.recursive_alias()
    assert e.span.line == 3


def test_anchors_aliases_and_merges_work(tmp_path):
    body = HEAD + (
        "x-size: &size {width: 300, height: 200}\n"
        "x-more: &more {description: shared}\n"
        "views:\n"
        "  - {query: weights of fc1 | heatmap, <<: *size}\n"
        "  - {query: weights of fc2 | heatmap, <<: [*size, *more], width: 400}\n"
    )
    spec = load_spec(spec_file(tmp_path, body))
    assert [(v.width, v.height, v.description) for v in spec.views] == [(300, 200, ""), (400, 200, "shared")]


def test_a_billion_laughs_fails_fast_and_located(tmp_path):
    assert len(BILLION_LAUGHS) < 500
    path = spec_file(tmp_path, BILLION_LAUGHS)
    start = time.perf_counter()
    e = failure(path)
    assert time.perf_counter() - start < 0.5
    assert e.message == messages.too_many_nodes(NODE_BUDGET)
    assert "x-f" in str(e)  # the first anchor whose expansion alone is too big


def test_a_billion_laughs_in_a_values_file_or_set(tmp_path):
    path = spec_file(tmp_path, HEAD + VIEWS)
    values = spec_file(tmp_path, BILLION_LAUGHS.replace("nnspec: 1\n", ""), "values.yaml")
    e = failure(path, values_files=[values])
    assert e.message == messages.too_many_nodes(NODE_BUDGET) and e.span.file == values


# -- templating -----------------------------------------------------------------------------
def test_a_default_that_is_not_yaml_is_located(tmp_path):
    e = failure(spec_file(tmp_path, HEAD + "title: ${x:-[1, 2}\n" + VIEWS))
    assert e.message.startswith("the default of '${x}' is not valid YAML")
    assert e.span.line == 3


def test_a_nul_byte_in_extends_is_located(tmp_path):
    e = failure(spec_file(tmp_path, HEAD + 'extends: "base\\0.yaml"\n' + VIEWS))
    assert e.message == messages.bad_path("extended spec", os.path.join(str(tmp_path), "base\\0.yaml"))
    assert e.span.line == 3


def test_a_mapping_as_a_view_id_is_a_schema_error(tmp_path):
    spec_file(tmp_path, HEAD + "views: [{id: {a: 1}, query: summary}]\n", "base.yaml")
    e = failure(spec_file(tmp_path, "nnspec: 1\nextends: base.yaml\nviews: [{id: {a: 1}, title: t}]\n"))
    assert any(x.message.startswith("views.0.id") for x in getattr(e, "errors", [e])), str(e)


@pytest.mark.parametrize(
    "body, where",
    [
        ("train: {steps: 5.0}\n", "train.steps"),  # jsonschema would take 5.0 as an integer
        ("model: {factory: 'tests.fixtures.models:make_tiny_mlp', seed: 18446744073709551616}\n", "model.seed"),
        ("model: {factory: 'tests.fixtures.models:make_tiny_mlp', seed: -1}\n", "model.seed"),
        ("input: {random: {shape: [4, 4], seed: 9223372036854775808}}\n", "input.random.seed"),
        ("input: {random: {shape: [4, 99999999999]}}\n", "input.random.shape.1"),
        ("views: [{query: summary, width: 100000}]\n", "views.0.width"),
        ("views: [{query: summary, height: 4001}]\n", "views.0.height"),
        ("views: [{query: summary, width: '$${w}'}]\n", "views.0.width"),  # a ${…} left is no number
    ],
)
def test_schema_holes_are_closed(tmp_path, body, where):
    base = HEAD if body.startswith(("train", "input")) else "nnspec: 1\n"
    tail = VIEWS if not body.startswith("views") else ""
    extra = "model: {factory: 'tests.fixtures.models:make_tiny_mlp'}\n" if body.startswith("views") else ""
    e = failure(spec_file(tmp_path, base + extra + body + tail))
    assert any(x.message.startswith(where) for x in getattr(e, "errors", [e])), str(e)


def test_the_largest_chart_size_reads(tmp_path):
    spec = load_spec(spec_file(tmp_path, HEAD + "views: [{query: summary, width: 4000, height: 4000}]\n"))
    assert spec.views[0].width == 4000


# -- files that never end -----------------------------------------------------------------
def _fifo(tmp_path, name="pipe.yaml"):
    path = str(tmp_path / name)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir"])
def test_extends_and_values_files_must_be_regular_files(tmp_path, target):
    name = {"/dev/zero": "/dev/zero", "fifo": _fifo(tmp_path), "dir": str(tmp_path)}[target]
    e = failure(spec_file(tmp_path, HEAD + f"extends: {name}\n" + VIEWS))
    assert e.message == messages.not_regular("extended spec", name) and e.span.line == 3
    with pytest.raises(SpecError) as info:
        load_spec(spec_file(tmp_path, HEAD + VIEWS), values_files=[name])
    assert info.value.message == messages.not_regular("values file", name)
    with pytest.raises(SpecError) as info:
        load_spec(name)
    assert info.value.message == messages.not_regular("spec file", name)


def test_input_files_data_sets_and_checkpoints_must_be_regular_files(tmp_path):
    from nnspec.inputs.batch import load_input
    from nnspec.inputs.model import load_checkpoint
    from tests.fixtures.models import make_tiny_mlp

    fifo = _fifo(tmp_path, "pipe.npy")
    os.mkdir(tmp_path / "folder.csv")
    for body in (f"input: {{file: {fifo}}}\n", "input: {dataset: folder.csv, features: [a]}\n"):
        spec = load_spec(spec_file(tmp_path, HEAD + body + VIEWS))
        with pytest.raises(SpecError, match="not a regular file") as info:
            load_input(spec.input, spec.base_dir)
        assert info.value.span is not None and info.value.span.line == 3
    with pytest.raises(SpecError, match="not a regular file"):
        load_checkpoint(make_tiny_mlp(), "/dev/zero")


def test_array_files_are_capped_before_loading(tmp_path, monkeypatch):
    from nnspec.inputs import batch
    from nnspec.inputs.batch import check_arrays, load_input

    huge = str(tmp_path / "huge.npy")  # a header that claims 8 TB, and no data
    with open(huge, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    with pytest.raises(SpecError, match="more than"):
        check_arrays(huge, batch.MAX_ARRAY_BYTES)
    bomb = str(tmp_path / "bomb.npz")  # 8 MB of zeros, a few KB compressed
    np.savez_compressed(bomb, x=np.zeros(10**6))
    assert os.path.getsize(bomb) < 100_000
    monkeypatch.setattr(batch, "MAX_ARRAY_BYTES", 4_000_000)
    spec = load_spec(spec_file(tmp_path, HEAD + "input: {file: bomb.npz}\n" + VIEWS))
    with pytest.raises(SpecError, match="8,000,000 bytes loaded"):
        load_input(spec.input, spec.base_dir)


# -- what errors show --------------------------------------------------------------------
def test_errors_never_quote_a_file_that_is_not_a_spec(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret$hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    e = failure(spec_file(tmp_path, HEAD + f"extends: {secret}\n" + VIEWS))
    assert "secret" not in str(e).replace(str(secret), "") and e.span.line == 3
    secret.write_text("password: hunter2\nkey: [unclosed\n")  # YAML, with a syntax error
    e = failure(spec_file(tmp_path, HEAD + f"extends: {secret}\n" + VIEWS))
    assert e.span.file == str(secret) and "hunter2" not in str(e) and "unclosed" not in str(e)


def test_the_cli_never_reports_an_internal_error(tmp_path, capsys):
    for body in (BILLION_LAUGHS, "a: &a [*a]\n", "a: \x07\n", "x: " + "[" * 3000, "a: !!int abc\n"):
        path = spec_file(tmp_path, body)
        for command in ("validate", "resolve", "plan", "check", "render", "layers"):
            argv = [command, path] + (["-o", str(tmp_path / "out"), "-q"] if command == "render" else [])
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert "internal error" not in err and "Traceback" not in err, err


# -- memory -------------------------------------------------------------------------------
def test_the_loader_keeps_nothing_between_loads(tmp_path):
    path = spec_file(tmp_path, HEAD + "x-a: &a {width: 300}\n" + "views: [{query: summary, <<: *a}]\n")
    for _ in range(20):
        load_spec(path)
    tracemalloc.start()
    try:
        for _ in range(50):
            load_spec(path)
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(200):
            load_spec(path)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - first < 200_000, f"{after - first:,} bytes kept by 200 loads"


# -- confinement -------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "outside.yaml").write_text("nnspec: 1\ntitle: outside\n")
    (tmp_path / "values.yaml").write_text("title: outside\n")
    (root / "base.yaml").write_text("nnspec: 1\ntitle: inside\n")
    os.symlink("/etc/passwd", root / "link.csv")
    os.symlink(tmp_path / "outside.yaml", root / "link.yaml")
    return root


@pytest.mark.parametrize("name", ["../outside.yaml", "/etc/passwd", "link.yaml"])
def test_a_confined_spec_cannot_extend_outside_its_root(project, name):
    path = spec_file(project, HEAD + f"extends: {name}\n" + VIEWS)
    assert load_spec(path).title == "outside" if name != "/etc/passwd" else True  # unconfined: it reads
    e = failure(path, root=str(project))
    assert e.message.startswith("extended spec") and "outside the folder" in e.message
    assert e.span.line == 3


def test_a_confined_spec_and_its_values_files_lie_under_the_root(project, tmp_path):
    inside = spec_file(project, HEAD + "extends: base.yaml\n" + VIEWS)
    assert load_spec(inside, root=str(project)).title == "inside"
    with pytest.raises(SpecError, match="outside the folder"):
        load_spec(spec_file(tmp_path, HEAD + VIEWS, "elsewhere.yaml"), root=str(project))
    with pytest.raises(SpecError, match="values file .* is outside"):
        load_spec(inside, root=str(project), values_files=[str(tmp_path / "values.yaml")])


@pytest.mark.parametrize(
    "body",
    [
        "input: {file: /etc/passwd}\n",
        "input: {file: ../../../../../../etc/passwd}\n",
        "input: {dataset: link.csv, features: [a]}\n",
        "input: {dataset: /etc/passwd.csv, features: [a]}\n",
    ],
)
def test_a_confined_spec_cannot_read_inputs_outside_its_root(project, body):
    from nnspec.inputs.batch import load_input

    spec = load_spec(spec_file(project, HEAD + body + VIEWS), root=str(project))
    assert spec.root == os.path.realpath(project)
    with confine(spec.root), pytest.raises(SpecError, match="outside the folder") as info:
        load_input(spec.input, spec.base_dir)
    assert info.value.span is not None and info.value.span.line == 3


def test_a_confined_spec_cannot_load_a_checkpoint_or_write_a_run_outside(project):
    from nnspec.inputs.model import build_model

    spec = load_spec(spec_file(project, HEAD.replace("}", ", checkpoint: /etc/passwd}") + VIEWS), root=str(project))
    with confine(spec.root), pytest.raises(SpecError, match="checkpoint '/etc/passwd' is outside") as info:
        build_model(spec)
    assert info.value.span.line == 2
    body = HEAD + "loss: sum\ninput: {random: {shape: [4, 4]}}\ntrain: {steps: 2, run: /tmp/elsewhere}\n" + VIEWS
    spec = load_spec(spec_file(project, body), root=str(project))
    with pytest.raises(SpecError, match="run '/tmp/elsewhere' is outside"):
        spec.run_dir  # noqa: B018
    inside = load_spec(spec_file(project, body.replace("/tmp/elsewhere", f"{project}/runs/mine")), root=str(project))
    assert inside.run_dir == f"{project}/runs/mine"


def test_the_cli_confines_with_root(project, capsys):
    path = spec_file(project, HEAD + "extends: /etc/passwd\n" + VIEWS)
    for command in ("validate", "resolve", "plan", "check", "layers"):
        assert main([command, path, "--root", str(project)]) == 1
        err = capsys.readouterr().err
        assert "outside the folder" in err and "root:" not in err, err
    assert main(["render", path, "--root", str(project), "-o", str(project / "out"), "-q"]) == 1
    assert "outside the folder" in capsys.readouterr().err


def test_unconfined_is_the_default(project):
    assert nnspec.load_spec(spec_file(project, HEAD + "extends: ../outside.yaml\n" + VIEWS)).title == "outside"


def test_every_failure_here_is_an_nnspec_error(tmp_path):
    """The API raises only nnspec's errors on hostile text (a sample of the fuzz's worst)."""
    for body in (b"\xff\xfe\x00n", b"a: *undefined\n", b"? [1]\n: 2\n", b"{<<: 1}\n", b"- - - -\n" * 50, b"\t\x85"):
        with pytest.raises(NnspecError):
            load_spec(spec_file(tmp_path, body))
