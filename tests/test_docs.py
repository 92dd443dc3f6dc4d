"""Every example in README.md and docs/ runs: spec blocks render (their views
succeed), Python blocks execute, ``nnspec …`` lines in bash blocks exit 0;
the query reference names everything the grammar and the step tables define."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil

import pytest

import nnspec
from nnspec.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _blocks(lang: str):
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        for i, block in enumerate(re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)):
            yield pytest.param(block, id=f"{os.path.basename(path)}-{lang}-{i}")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with the shipped specs, as a user's checkout has them."""
    shutil.copytree(os.path.join(ROOT, "specs"), tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNSPEC_RUNS", str(tmp_path / "runs"))
    return tmp_path


@pytest.mark.parametrize("block", [b for b in _blocks("yaml") if "nnspec: 1" in b.values[0]])
def test_doc_spec_renders(block, project):
    spec = project / "specs" / "doc-example.yaml"  # beside the shipped specs: extends and checkpoints resolve
    spec.write_text(block)
    dash = nnspec.render(str(spec), out=str(project / "out"))
    assert dash.ok, [v.error for v in dash.views]


@pytest.mark.parametrize("block", list(_blocks("python")))
def test_doc_python_runs(block, project, monkeypatch):
    # every dashboard the block makes, also those it does not keep in a variable
    # (README: `nnspec.render(spec, model=…)`, `nnspec.show(…)`, which renders through nnspec.render)
    dashboards = []
    render = nnspec.render

    def kept(*args, **kwargs):
        dashboards.append(render(*args, **kwargs))
        return dashboards[-1]

    monkeypatch.setattr(nnspec, "render", kept)
    exec(compile(block, "<doc example>", "exec"), {"__name__": "__doc_example__"})
    if "nnspec.render(" in block or "nnspec.show(" in block:
        assert dashboards, "the example renders nothing"
    for dash in dashboards:
        assert dash.views and dash.ok, [(v.query, v.error) for v in dash.views if v.error]


@pytest.mark.parametrize("block", list(_blocks("bash")))
def test_doc_commands_run(block, project, monkeypatch):
    monkeypatch.setenv("NNSPEC_RUNS", "runs")  # as a user's shell has it: runs/ in the working directory
    for line in block.splitlines():
        if line.startswith("nnspec "):
            args = shlex.split(line.split(" > ")[0].split("#")[0])[1:]
            assert main(args) == 0, line


def test_there_are_examples():
    assert len(list(_blocks("yaml"))) >= 4 and len(list(_blocks("python"))) >= 3


def test_the_query_reference_covers_the_grammar():
    from nnspec.query.catalog import MARKS, TRANSFORMS
    from nnspec.query.parser import grammar_text

    guide = open(os.path.join(ROOT, "docs", "guide.md"), encoding="utf-8").read()
    kinds = re.search(r"KIND: (.*)", grammar_text()).group(1)
    for kind in re.findall(r'"(\w+)"', kinds) + ["input_grads", "graph", "summary", "function", "loss", "over steps"]:
        assert f"`{kind}" in guide or f"{kind} of" in guide, kind
    for name in list(TRANSFORMS) + list(MARKS):
        assert f"`{name}" in guide, name
    for op in re.findall(r'"([<>=!]+)"', re.search(r"COMPARE: (.*)", grammar_text()).group(1)):
        assert f"`{op}`" in guide, op


def test_gallery_entries_render():
    import sys

    sys.path.insert(0, os.path.join(ROOT, "docs"))
    import gallery

    for title, spec_name, query in gallery.ENTRIES:
        v = gallery.render_entry(spec_name, query, title)
        assert v.error is None, (title, v.error)
        assert os.path.exists(os.path.join(ROOT, "docs", "gallery", f"{gallery.slug(title)}.png")), title
