"""Models as people bring them: keyword inputs, structured outputs, their own
losses, in-place operations, and renders inside torch.no_grad(). Every number
is checked against the framework's own outputs, autograd, or hooks of our own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nnspec
from nnspec.inputs import messages as inputs_messages

transformers = pytest.importorskip("transformers")
from tests import hf_models  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


VOCAB = hf_models.VOCAB


def spec(views, loss=None, **extra):
    s = {"nnspec": 1, "title": "t", "views": [{"query": q} for q in views], **extra}
    if loss:
        s["loss"] = loss
    return s


def ids(shape=(2, 12), seed=0, high=VOCAB):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def views(dash):
    for v in dash.views:
        assert v.error is None, v.error
    return dash.views


# -- inputs ----------------------------------------------------------------------
def test_keyword_inputs_from_a_spec_honour_the_attention_mask(tmp_path):
    model = hf_models.gpt2()
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :4] = 0  # left padding: every later position of the row changes
    x = ids()
    seen = []
    h = model.transformer.h[1].mlp.register_forward_hook(lambda m, a, o: seen.append(o.detach()))
    with torch.no_grad():
        model(input_ids=x, attention_mask=mask)
        model(input_ids=x)
    h.remove()
    want, unmasked = seen
    assert (want - unmasked).abs().max() > 1e-3  # the mask matters, so a dropped mask would show
    torch.save({"input_ids": x, "attention_mask": mask}, tmp_path / "batch.pt")
    s = spec(["activations of transformer.h.1.mlp | stats | table"], input={"file": "batch.pt"})
    s["model"] = {"factory": "tests.hf_models:gpt2"}
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(s))
    dash = nnspec.render(str(tmp_path / "s.yaml"))
    (v,) = views(dash)
    row = v.data.iloc[0]
    for stat in ("mean", "min", "max"):
        assert row[stat] == pytest.approx(getattr(want, stat)().item(), rel=1e-5, abs=1e-7)
    assert row["std"] == pytest.approx(want.std().item(), rel=1e-4)
    assert row["mean"] != pytest.approx(unmasked.mean().item(), rel=1e-3)  # the mask was used
    assert "input_ids (2, 12), attention_mask (2, 12)" in dash.footer


def test_kwargs_input_sources_in_yaml(tmp_path):
    import yaml

    s = spec(["activations of transformer.h.0.mlp | stats | table"], loss="next_token")
    s["model"] = {"factory": "tests.hf_models:gpt2"}
    s["input"] = {
        "kwargs": {
            "input_ids": {"random": {"shape": [2, 12], "dist": "randint", "high": VOCAB, "seed": 0}},
            "attention_mask": {"ones": [2, 12]},
        }
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(s))
    (v,) = views(nnspec.render(str(tmp_path / "s.yaml")))
    model, seen = hf_models.gpt2(), {}
    h = model.transformer.h[0].mlp.register_forward_hook(lambda m, a, o: seen.setdefault("o", o.detach()))
    with torch.no_grad():
        model(input_ids=ids(), attention_mask=torch.ones(2, 12, dtype=torch.long))
    h.remove()
    assert v.data.iloc[0]["mean"] == pytest.approx(seen["o"].mean().item(), rel=1e-5)


def test_a_bad_source_under_kwargs_is_located(tmp_path):
    text = "nnspec: 1\nmodel: {factory: tests.hf_models:gpt2}\ninput:\n  kwargs:\n    input_ids: {ones: [2, 4], zeros: [2, 4]}\nviews: [{query: summary}]\n"
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(nnspec.SpecError) as e:
        nnspec.render(str(tmp_path / "s.yaml"))
    assert e.value.span.line == 5 and "input.kwargs.input_ids needs exactly one of" in e.value.message


def test_python_inputs_dict_inputs_object_and_no_guessing():
    model = hf_models.gpt2()
    x = ids()
    d1 = nnspec.render(spec(["activations of lm_head | mean"]), model=model, inputs={"input_ids": x})
    d2 = nnspec.render(
        spec(["activations of lm_head | mean"]), model=model, inputs=nnspec.Inputs(kwargs={"input_ids": x})
    )
    d3 = nnspec.render(spec(["activations of lm_head | mean"]), model=model, inputs=x)
    with torch.no_grad():
        want = model(x).logits.mean().item()
    for d in (d1, d2, d3):
        assert views(d)[0].data["value"].iloc[0] == pytest.approx(want, rel=1e-5)
    with pytest.raises(nnspec.SpecError) as e:
        nnspec.render(spec(["summary"]), model=model, inputs=(x, x))
    assert e.value.message == inputs_messages.ambiguous_inputs(2) and "target=" in e.value.hint


def test_t5_runs_with_decoder_inputs_and_its_own_loss():
    model = hf_models.t5()
    x, dec, labels = ids(seed=0), ids((2, 6), seed=1), ids((2, 6), seed=2)
    inputs = {"input_ids": x, "decoder_input_ids": dec, "labels": labels}
    dash = nnspec.render(
        spec(["grads of lm_head.weight | norm", "activations of encoder | stats | table"], loss="model"),
        model=model,
        inputs=inputs,
    )
    grad_view, act_view = views(dash)
    out = model(**inputs)
    (g,) = torch.autograd.grad(out.loss, [model.lm_head.weight])
    assert grad_view.data["value"].iloc[0] == pytest.approx(g.norm().item(), rel=1e-5)
    assert act_view.data.iloc[0]["mean"] == pytest.approx(out.encoder_last_hidden_state.mean().item(), rel=1e-5)


def test_next_token_loss_equals_the_models_own_loss():
    model, x = hf_models.gpt2(), ids()
    a = nnspec.render(
        spec(["grads of transformer.h.0.mlp.c_fc.weight | norm"], loss="next_token"),
        model=model,
        inputs={"input_ids": x},
    )
    b = nnspec.render(
        spec(["grads of transformer.h.0.mlp.c_fc.weight | norm"], loss="model"),
        model=model,
        inputs={"input_ids": x, "labels": x},
    )
    out = model(input_ids=x, labels=x)
    (g,) = torch.autograd.grad(out.loss, [model.transformer.h[0].mlp.c_fc.weight])
    for d in (a, b):
        assert views(d)[0].data["value"].iloc[0] == pytest.approx(g.norm().item(), rel=1e-5)


def test_cross_entropy_takes_sequence_logits_and_ignores_minus_100():
    model, x = hf_models.gpt2(), ids()
    y = ids(seed=3)
    y[:, :4] = -100
    d = nnspec.render(spec(["grads of lm_head.weight | norm"], loss="cross_entropy"), model=model, inputs=x, target=y)
    logits = model(x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1), ignore_index=-100)
    (g,) = torch.autograd.grad(loss, [model.lm_head.weight])
    assert views(d)[0].data["value"].iloc[0] == pytest.approx(g.norm().item(), rel=1e-5)


def test_model_output_and_at_pick_choose_tensors():
    model, x = hf_models.gpt2(), ids()
    model.set_attn_implementation("eager")  # eager attention returns its weights as output 1
    s = spec(["activations of transformer.h.0.attn @1 | stats | table", "activations of transformer.h.0.attn | mean"])
    a, b = views(nnspec.render(s, model=model, inputs={"input_ids": x}))
    heads = model.config.n_head
    assert a.data.iloc[0]["numel"] == 2 * heads * 12 * 12  # the attention weights, not the output
    assert any("output 0 is shown of 0, 1" in n for n in b.notes)
    bad = nnspec.render(
        spec(["activations of transformer.h.0.attn @weights | mean"]), model=model, inputs={"input_ids": x}
    )
    assert "has no output 'weights'" in bad.views[0].error


def test_inputs_of_sees_keyword_arguments():
    model, x, seen = hf_models.llama(), ids(), {}
    attn = model.model.layers[0].self_attn

    def keep(m, a, k):
        seen.setdefault("h", k["hidden_states"].detach().clone())

    h = attn.register_forward_pre_hook(keep, with_kwargs=True)
    with torch.no_grad():
        model(input_ids=x)
    h.remove()
    d = nnspec.render(spec(["inputs of type(LlamaAttention) | stats | table"]), model=model, inputs={"input_ids": x})
    data = views(d)[0].data.set_index("layer")
    assert data.loc["model.layers.0.self_attn", "mean"] == pytest.approx(seen["h"].mean().item(), rel=1e-5)
    assert data.loc["model.layers.0.self_attn", "numel"] == seen["h"].numel()


# -- failures stay with their views ---------------------------------------------
def test_input_grads_on_token_ids_fails_alone_and_is_located():
    model, x = hf_models.gpt2(), ids()
    s = spec(
        ["activations of transformer.h.0 | mean", "input_grads | abs | max", "grads of lm_head.weight | norm"],
        loss="next_token",
    )
    fwd, ig, grads = nnspec.render(s, model=model, inputs={"input_ids": x}).views
    assert fwd.error is None and grads.error is None
    assert "input_grads needs a floating-point input" in ig.error and "<query>:1:1" in ig.error


def test_a_failing_loss_fails_only_the_gradient_views():
    model, x = hf_models.gpt2(), ids()
    s = spec(
        ["activations of transformer.h.0 | mean", "grads of lm_head.weight | norm", "weights of lm_head | mean"],
        loss="mse",
    )
    fwd, grads, w = nnspec.render(s, model=model, inputs=x, target=torch.zeros(3)).views
    assert fwd.error is None and w.error is None
    assert "loss 'mse' failed" in grads.error


def test_render_inside_no_grad_still_gets_gradients():
    model, x = hf_models.gpt2(), ids()
    s = spec(
        ["grads of lm_head.weight | norm", "activations of transformer.h.0.mlp | histogram(bins=10)"], loss="next_token"
    )
    with torch.no_grad():
        g_view, h_view = views(nnspec.render(s, model=model, inputs={"input_ids": x}))
    out = model(input_ids=x, labels=x)
    (g,) = torch.autograd.grad(out.loss, [model.lm_head.weight])
    assert g_view.data["value"].iloc[0] == pytest.approx(g.norm().item(), rel=1e-5)
    assert torch.is_grad_enabled()


# -- in-place operations (torchvision/timm patterns) ------------------------------
class Bottleneck(nn.Module):
    """torchvision's Bottleneck: conv-bn-relu(inplace) x3, ``out += identity``, relu."""

    def __init__(self, c: int, mid: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, c, 1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(Bottleneck(8, 4), Bottleneck(8, 4))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.layer1(self.stem(x)).mean((2, 3)))


def resnet():
    torch.manual_seed(0)
    m = TinyResNet()
    for mod in m.modules():  # non-trivial running statistics, as a trained network has
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.3)
            mod.running_var.uniform_(0.5, 2)
    return m.eval()


def test_inputs_and_output_grads_are_exact_under_in_place_writes():
    model = resnet()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 3])
    s = spec(
        ["inputs of stem.2 | stats | table", "output_grads of layer1.0.bn1 | norm",
         "output_grads of layer1.0.bn3 | norm", "activations of layer1.0.bn3 | stats | table"],
        loss="cross_entropy",
    )  # fmt: skip
    inp, g_bn1, g_bn3, act_bn3 = views(nnspec.render(s, model=model, inputs=x, target=y))
    # our own hooks: keep each output's own tensor by handing later code a copy
    outs = {}

    def keep(name):
        def hook(m, a, o):
            outs[name] = o
            return o.clone()

        return hook

    handles = [model.stem[1].register_forward_hook(keep("stem.1")), model.layer1[0].bn1.register_forward_hook(keep("bn1")),
               model.layer1[0].bn3.register_forward_hook(keep("bn3"))]  # fmt: skip
    loss = torch.nn.functional.cross_entropy(model(x), y)
    for h in handles:
        h.remove()
    stem_out = outs["stem.1"].detach()  # the in-place ReLU's input
    assert inp.data.iloc[0]["min"] == pytest.approx(stem_out.min().item(), rel=1e-5)
    assert stem_out.min() < 0 and inp.data.iloc[0]["zero_frac"] == 0
    gb1, gb3 = torch.autograd.grad(loss, [outs["bn1"], outs["bn3"]])
    assert g_bn1.data["value"].iloc[0] == pytest.approx(gb1.norm().item(), rel=1e-5)
    assert g_bn3.data["value"].iloc[0] == pytest.approx(gb3.norm().item(), rel=1e-5)
    assert act_bn3.data.iloc[0]["min"] == pytest.approx(outs["bn3"].min().item(), rel=1e-5)  # before `+=`
    # and the model computed what it computes without nnspec
    assert torch.equal(model(x), resnet()(x))
