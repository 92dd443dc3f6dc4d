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
    # Hugging Face models from small configs (tests/hf_models.py): keyword inputs, their own losses
    "tests.hf_models:gpt2",
    "tests.hf_models:bert",
    "tests.hf_models:vit",
    "tests.hf_models:llama",
    "tests.hf_models:t5",
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


HF_EXPECTED = {  # factory: (loss, keyword arguments, activation functions)
    "gpt2": ("next_token", ["input_ids", "attention_mask"], {"gelu_new"}),
    "bert": ("sum", ["input_ids", "attention_mask"], {"gelu", "tanh"}),
    "vit": ("sum", ["pixel_values"], {"gelu", "tanh"}),
    "llama": ("next_token", ["input_ids", "attention_mask"], {"silu"}),
    "t5": ("model", ["input_ids", "attention_mask", "decoder_input_ids", "labels"], {"relu"}),
}


@pytest.mark.parametrize("name", list(HF_EXPECTED))
def test_init_on_hugging_face_models(name, tmp_path, monkeypatch):
    import yaml

    from tests import hf_models

    monkeypatch.chdir(ROOT)
    out = str(tmp_path / f"{name}.yaml")
    assert main(["init", "--factory", f"tests.hf_models:{name}", "-o", out]) == 0
    written = yaml.safe_load(open(out))
    loss, kwargs, functions = HF_EXPECTED[name]
    assert written["loss"] == loss
    assert list(written["input"]["kwargs"]) == kwargs
    model = getattr(hf_models, name)()
    if name == "vit":
        c = model.config
        assert written["input"]["kwargs"]["pixel_values"] == {
            "random": {"shape": [2, c.num_channels, c.image_size, c.image_size], "seed": 0}
        }
    else:
        ids = written["input"]["kwargs"]["input_ids"]["random"]
        assert ids == {"shape": [2, 16], "dist": "randint", "high": model.config.vocab_size, "seed": 0}
        assert written["input"]["kwargs"]["attention_mask"] == {"ones": [2, 16]}
    queries = [v["query"] for v in written["views"]]
    assert "function *" in queries and any(q.startswith("attention of ") for q in queries)
    dash = nnspec.render(out)
    assert [(v.title, v.error) for v in dash.views if v.error] == []
    by_query = {v.query: v for v in dash.views}
    assert set(by_query["function *"].data["function"]) == functions
    attention = next(v for q, v in by_query.items() if q.startswith("attention of "))
    sums = attention.data.groupby(["head", "query"])["weight"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-5)  # each query's weights over the keys
    assert all(c.passed for c in dash.checks)


def test_the_tied_head_is_drawn_once(tmp_path, monkeypatch):
    from tests import hf_models

    monkeypatch.chdir(ROOT)
    out = str(tmp_path / "gpt2.yaml")
    assert main(["init", "--factory", "tests.hf_models:gpt2", "-o", out]) == 0
    dash = nnspec.render(out)
    model = hf_models.gpt2()
    dist = next(v for v in dash.views if v.title == "Weight distributions")
    counts = dist.data.groupby("layer")["count"].sum()
    assert "lm_head.weight" not in counts.index  # it is transformer.wte.weight
    assert counts["transformer.wte.weight"] == model.transformer.wte.weight.numel()
    flow = next(v for v in dash.views if v.title.startswith("Gradient flow"))
    assert list(flow.data["layer"]).count("transformer.wte.weight") == 1


def test_layers_counts_a_shared_tensor_once():
    from nnspec.inputs.model import layer_rows, layers_text
    from tests import hf_models

    for make in (hf_models.gpt2, hf_models.t5):
        model = make()
        rows = layer_rows(model)
        assert sum(r["count"] for r in rows) == sum(p.numel() for p in model.parameters())
        head = next(r for r in rows if r["path"] == "lm_head")
        first = "transformer.wte.weight" if make is hf_models.gpt2 else "shared.weight"
        assert head["count"] == 0 and head["shared"] == [("lm_head.weight", first)]
        assert f"= {first}" in head["params"]
        text = layers_text(model)
        assert text.splitlines()[-2].split()[-1] == f"{sum(p.numel() for p in model.parameters()):,}"


def _model_files(tmp_path):
    """One file of each kind nnspec opens, written from one small torch CNN."""
    import torch
    from safetensors.torch import save_file

    from tests.fixtures.models import TinyCNN

    torch.manual_seed(0)
    m = TinyCNN().eval()
    x = torch.randn(2, 2, 8, 8)
    files = {}
    files["safetensors"] = tmp_path / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(files["safetensors"]))
    files["state_dict"] = tmp_path / "cnn.pt"
    torch.save(m.state_dict(), files["state_dict"])
    files["pt2"] = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(m, (x,)), str(files["pt2"]))
    files["torchscript"] = tmp_path / "cnn.ts"
    torch.jit.save(torch.jit.trace(m, (x,)), str(files["torchscript"]))
    files["onnx"] = tmp_path / "cnn.onnx"
    torch.onnx.export(m, (x,), str(files["onnx"]), dynamo=True, verbose=False)
    return files


@pytest.mark.filterwarnings("ignore")
def test_init_from_a_model_file_renders_for_every_kind(tmp_path, monkeypatch):
    """nnspec init --file writes a spec with the views that file's backend can serve; each renders."""
    monkeypatch.chdir(tmp_path)
    for kind, path in _model_files(tmp_path).items():
        out = tmp_path / f"{kind}.yaml"
        assert main(["init", "--file", str(path), "-o", str(out)]) == 0, kind
        text = out.read_text()
        assert f"file: {path.name}" in text or f'file: "{path.name}"' in text, kind
        dash = nnspec.render(str(out))
        errors = [(v.title, v.error) for v in dash.views if v.error]
        assert errors == [], (kind, errors)
        assert all(c.passed for c in dash.checks), kind
        titles = [v.title for v in dash.views]
        assert "Layer summary" in titles, kind
        if kind in ("safetensors", "state_dict"):  # no code: no input, no activations
            assert "input:" not in text and not any("Activation" in t for t in titles), kind
        if kind in ("pt2", "onnx"):
            assert any("Activation statistics" in t for t in titles), kind
