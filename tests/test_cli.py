"""The command line: exit codes, outputs, and clear errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nnspec.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(ROOT, "specs", "quickstart.yaml")


def _write(tmp_path, text: str, name="spec.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_render_writes_every_format(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["render", QUICK, "-o", str(out), "--format", "html,json,png,svg,pdf"]) == 0
    names = sorted(os.listdir(out))
    assert "quickstart.html" in names
    for ext in ("vl.json", "png", "svg", "pdf"):
        assert sum(n.endswith("." + ext) for n in names) == 5, ext
    png = next(n for n in names if n.endswith(".png"))
    assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / next(n for n in names if n.endswith(".pdf"))).read_bytes()[:4] == b"%PDF"
    spec = json.loads((out / next(n for n in names if n.endswith(".vl.json"))).read_text())
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    assert not [n for n in names if n.startswith(".nnspec-")]  # no temp files left


def test_failed_view_exit_code_and_others_render(tmp_path, capsys):
    spec = _write(
        tmp_path,
        """nnspec: 1
title: "<script>alert('x')</script> & co"
description: "a <b>bold</b> claim"
model: {factory: "tests.fixtures.models:make_tiny_mlp"}
views:
  - {title: "fine <i>view</i>", query: weights of fc1 | heatmap}
  - {title: broken, query: weights of nothing | heatmap}
""",
    )
    out = tmp_path / "out"
    assert main(["render", spec, "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "no module matches 'nothing'" in err and "1 of 2 views failed" in err
    html = (out / "spec.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in html
    assert "a &lt;b&gt;bold&lt;/b&gt; claim" in html and "fine &lt;i&gt;view&lt;/i&gt;" in html
    assert 'class="card failed"' in html


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["render"])
    assert e.value.code == 2
    assert main(["render", QUICK, "--format", "gif"]) == 2


def test_validate_and_schema(tmp_path, capsys):
    assert main(["validate", QUICK]) == 0
    bad = _write(tmp_path, "nnspec: 1\nmodel: {factory: 'a:b'}\nviews:\n  - query: weights of x | hetmap\n")
    assert main(["validate", bad]) == 1
    assert "did you mean 'heatmap'" in capsys.readouterr().err
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_plan_and_layers(capsys):
    assert main(["plan", QUICK]) == 0
    out = capsys.readouterr().out
    assert "passes: forward + backward" in out and "hooked modules (3)" in out and "bytes kept" in out
    assert main(["layers", QUICK]) == 0
    out = capsys.readouterr().out
    assert "fc1     Linear" in out and "weight (3, 2)" in out and out.rstrip().endswith("13")


def test_missing_spec_file(capsys):
    assert main(["render", "no/such/spec.yaml"]) == 1
    assert "cannot read spec file 'no/such/spec.yaml'" in capsys.readouterr().err


def test_real_process_no_traceback(tmp_path):
    spec = _write(
        tmp_path,
        "nnspec: 1\nmodel: {factory: 'tests.fixtures.models:raising_factory'}\nviews: [{query: weights of a}]\n",
    )
    r = subprocess.run(
        [sys.executable, "-m", "nnspec", "render", spec, "-o", str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "factory exploded on purpose" in r.stderr
    r = subprocess.run([sys.executable, "-m", "nnspec", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "render" in r.stdout


def test_help_and_validate_do_not_import_torch():
    code = (
        f"import sys; from nnspec.cli import main; main(['validate', {QUICK!r}]); "
        "print('torch' in sys.modules, 'altair' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip().endswith("False False"), r.stdout + r.stderr


def test_a_command_imports_jsonschema_without_building_rfc3987_grammars(tmp_path):
    """rfc3987-syntax (beside Jupyter) builds 38 Lark grammars when jsonschema imports it, ~1 s
    of every command: the command's process leaves it out, and it stays importable after."""
    (tmp_path / "rfc3987_syntax.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'a').write('x')\ndef is_valid_syntax(kind, value):\n    return True\n"
    )
    code = (
        f"import sys; from nnspec.cli import main; main(['validate', {QUICK!r}]); "
        "import jsonschema, altair, rfc3987_syntax; print(sorted(jsonschema.FormatChecker.checkers).count('iri'))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0 and r.stdout.split()[-1] == "0", r.stdout + r.stderr
    assert (tmp_path / "imported").read_text() == "x"  # imported once: by the line after the command, not by jsonschema
    r = subprocess.run(
        [sys.executable, "-c", "import jsonschema; print(sorted(jsonschema.FormatChecker.checkers).count('iri'))"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.stdout.strip() == "1", r.stdout + r.stderr  # the fake is real enough: a plain import uses it
