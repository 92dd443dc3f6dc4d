"""nnspec init: a starter spec for every model in the fixtures and the project renders without edits."""

from __future__ import annotations

import json
import os

import pytest

import nnspec
from nnspec.cli.main import main
from tests.conftest import ROOT

FACTORIES = [
    "tests.fixtures.models:make_tiny_mlp",
    "tests.fixtures.models:TinyCNN",
    "tests.fixtures.models:NaNModel",
    "tests.fixtures.models:Big",
    "tests.fixtures.models:Branchy",
    "tests.fixtures.models:Stack",
    "tests.fixtures.models:Activations",
    "tests.fixtures.models:make_dead_layer",
    "nnspec.models:MLP",
    "nnspec.models:ResNet",
    "nnspec.models:TinyEncoder",
    "nnspec.models:GPT",
]


@pytest.mark.parametrize("factory", FACTORIES)
def test_init_output_renders(factory, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # where tests.fixtures is importable, as a user runs it from their project
    out = str(tmp_path / "spec.yaml")
    assert main(["init", "--factory", factory, "-o", out]) == 0
    text = open(out).read()
    assert text.startswith("# yaml-language-server: $schema=nnspec.schema.json\n")
    schema = json.load(open(tmp_path / "nnspec.schema.json"))
    assert schema == json.loads(json.dumps(nnspec.spec.load.schema()))
    dash = nnspec.render(out)
    assert [v.error for v in dash.views if v.error] == []
    assert [v.title for v in dash.views][:2] == ["Architecture", "Layer summary"]
    assert all(v.chart is not None for v in dash.views)


def test_init_never_overwrites_and_says_how_to_give_the_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "spec.yaml"
    out.write_text("mine\n")
    assert main(["init", "--factory", "nnspec.models:MLP", "-o", str(out)]) == 1
    assert "exists already" in capsys.readouterr().err and out.read_text() == "mine\n"
    assert main(["init", "--factory", "nnspec.models:MLP", "-o", str(out), "--input-shape", "4,3", "--force"]) == 1
    err = capsys.readouterr().err
    assert "a forward pass on a random batch of shape (4, 3) failed" in err and "--input-shape" in err
    assert out.read_text() == "mine\n"  # nothing written when the model does not run
    assert main(["init", "--factory", "nnspec.models:MLP", "-o", str(out), "--input-shape", "5,2", "--force"]) == 0
    assert "shape: [5, 2]" in out.read_text()


def test_a_file_factory_is_written_relative_to_the_spec(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "net.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.lin = torch.nn.Linear(5, 2)\n"
        "    def forward(self, x):\n        return self.lin(x)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--factory", "src/net.py:Net", "-o", "specs/net.yaml"]) == 0
    assert 'factory: "../src/net.py:Net"' in (tmp_path / "specs" / "net.yaml").read_text()
    monkeypatch.chdir(os.path.dirname(ROOT))  # from anywhere: the path is the spec's own
    dash = nnspec.render(str(tmp_path / "specs" / "net.yaml"))
    assert [v.error for v in dash.views if v.error] == []
