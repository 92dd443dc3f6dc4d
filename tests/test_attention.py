"""``attention of``: weights read from any transformer, checked against independent numbers.

Hugging Face models (built from small configs, nothing downloads) are compared
with their own ``output_attentions=True`` under eager attention, whichever
implementation nnspec's pass runs (eager or sdpa); a timm-style ``Attention``
(fused and unfused) against a softmax computed by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnspec
from nnspec.backends.pytorch import attention
from nnspec.capture import messages as capture_messages
from nnspec.compiler import messages as compiler_messages

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TOL = 1e-5


# -- models ----------------------------------------------------------------------------------
def _hf(name: str, impl: str):
    T = transformers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if name == "gpt2":
            cfg = T.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=100, n_positions=64)
            model = T.GPT2Model(cfg)
        elif name == "bert":
            cfg = T.BertConfig(
                num_hidden_layers=2,
                num_attention_heads=4,
                hidden_size=64,
                intermediate_size=128,
                vocab_size=100,
                max_position_embeddings=64,
            )
            model = T.BertModel(cfg)
        elif name == "llama":
            cfg = T.LlamaConfig(
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                hidden_size=64,
                intermediate_size=128,
                vocab_size=100,
            )
            model = T.LlamaModel(cfg)
        elif name == "t5":
            cfg = T.T5Config(
                num_layers=2, num_decoder_layers=2, num_heads=4, d_model=64, d_kv=16, d_ff=128, vocab_size=100
            )
            model = T.T5Model(cfg)
        else:
            cfg = T.ViTConfig(
                image_size=32,
                patch_size=8,
                num_hidden_layers=2,
                num_attention_heads=4,
                hidden_size=64,
                intermediate_size=128,
            )
            model = T.ViTModel(cfg)
    model.config._attn_implementation = impl
    model.set_attn_implementation(impl)
    return model.eval()


def _inputs(name: str) -> dict:
    g = torch.Generator().manual_seed(1)
    if name == "vit":
        return {"pixel_values": torch.randn(2, 3, 32, 32, generator=g)}
    ids = torch.randint(0, 100, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0  # the second sequence is padded: its last two keys are masked
    out = {"input_ids": ids, "attention_mask": mask}
    if name == "t5":
        out["decoder_input_ids"] = ids[:, :5]
    return out


def _reference(name: str) -> dict:
    """Path -> the eager model's own output_attentions."""
    model = _hf(name, "eager")
    with torch.no_grad():
        out = model(**_inputs(name), output_attentions=True)
    paths = [p for p, m in model.named_modules() if attention.is_attention(m)]
    if name == "t5":
        enc = [p for p in paths if p.startswith("encoder.")]
        dec_self = [p for p in paths if p.startswith("decoder.") and ".layer.0." in p]
        dec_cross = [p for p in paths if p.startswith("decoder.") and ".layer.1." in p]
        pairs = list(zip(enc, out.encoder_attentions)) + list(zip(dec_self, out.decoder_attentions))
        return dict(pairs + list(zip(dec_cross, out.cross_attentions)))
    assert len(paths) == len(out.attentions)
    return dict(zip(paths, out.attentions))


def _recorded(model, inputs: dict, paths=None) -> dict:
    paths = paths if paths is not None else [p for p, m in model.named_modules() if attention.is_attention(m)]
    store: dict = {}
    with torch.no_grad(), attention.recording(model, paths, store):
        model(**inputs)
    return store


# -- the numbers -------------------------------------------------------------------------------
MODELS = ["gpt2", "bert", "llama", "t5", "vit"]


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", MODELS)
def test_weights_equal_hugging_face_output_attentions(name, impl):
    ref = _reference(name)
    got = _recorded(_hf(name, impl), _inputs(name))
    assert set(got) == set(ref)
    for path, r in ref.items():
        assert got[path].shape == r.shape, path
        assert got[path].dtype == torch.float32
        assert (got[path] - r).abs().max().item() < TOL, (name, impl, path)


def test_which_modules_are_attention():
    picked = {
        name: sorted({type(m).__name__ for m in _hf(name, "eager").modules() if attention.is_attention(m)})
        for name in MODELS
    }
    assert picked == {
        "gpt2": ["GPT2Attention"],
        "bert": ["BertSelfAttention"],  # not BertAttention, which holds it
        "llama": ["LlamaAttention"],
        "t5": ["T5Attention"],  # not T5LayerSelfAttention / T5LayerCrossAttention
        "vit": ["ViTAttention"],
    }
    assert attention.is_attention(nn.MultiheadAttention(8, 2))
    assert attention.is_attention(TimmAttention(8, 2)) and not attention.is_attention(TimmBlock(8, 2))
    assert not attention.is_attention(nn.Linear(2, 2))


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_padding_rows_sum_to_one_over_allowed_keys(impl):
    got = _recorded(_hf("bert", impl), _inputs("bert"))
    for w in got.values():
        assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5)
        assert w[1, :, :, 5:].abs().max().item() == 0.0  # padded keys get nothing
        assert w[0, :, :, 5:].min().item() > 0.0


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_models_have_zeros_above_the_diagonal(name, impl):
    got = _recorded(_hf(name, impl), _inputs(name))
    for w in got.values():
        n = w.shape[-1]
        above = torch.ones(n, n, dtype=torch.bool).triu(1)
        assert w[..., above].abs().max().item() == 0.0
        assert torch.allclose(w[0].sum(-1), torch.ones(w.shape[1:-1]), atol=1e-5)


def test_grouped_query_heads_are_repeated_like_the_model():
    # Llama: 4 query heads over 2 key/value heads; sdpa gets enable_gqa or repeated keys
    ref = _reference("llama")
    got = _recorded(_hf("llama", "sdpa"), _inputs("llama"))
    for path, r in ref.items():
        assert got[path].shape[1] == 4
        assert (got[path] - r).abs().max().item() < TOL


# -- scaled_dot_product_attention, by hand --------------------------------------------------------
def _by_hand(q, k, mask=None, causal=False, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    if k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    s = (q @ k.transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask
    return s.softmax(-1)


def test_sdpa_weights_follow_every_argument():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 5, 8, generator=g), torch.randn(2, 4, 6, 8, generator=g)
    allowed = torch.rand(2, 1, 5, 6, generator=g) > 0.3
    allowed[..., 0] = True
    added = torch.randn(2, 4, 5, 6, generator=g)
    cases = [
        ({}, _by_hand(q, k)),
        ({"scale": 0.3}, _by_hand(q, k, scale=0.3)),
        ({"attn_mask": allowed}, _by_hand(q, k, mask=allowed)),
        ({"attn_mask": added}, _by_hand(q, k, mask=added)),
        ({"is_causal": True}, _by_hand(q, k, causal=True)),
    ]
    for kwargs, want in cases:
        got = attention.sdpa_weights(q, k, k, **kwargs)
        assert (got - want).abs().max().item() < 1e-6, kwargs
    kv = torch.randn(2, 2, 6, 8, generator=g)  # grouped-query: 4 query heads, 2 key/value heads
    got = attention.sdpa_weights(q, kv, kv, enable_gqa=True)
    assert (got - _by_hand(q, kv)).abs().max().item() < 1e-6
    out = F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)  # the weights are what sdpa applied
    assert (got @ kv.repeat_interleave(2, dim=1) - out).abs().max().item() < 1e-5


def test_a_fully_masked_row_is_zeros_not_nan():
    q = torch.randn(1, 1, 3, 4)
    mask = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    mask[0, 0, 1] = False
    w = attention.sdpa_weights(q, q, q, attn_mask=mask)
    assert torch.isfinite(w).all() and w[0, 0, 1].abs().max() == 0.0
    assert torch.allclose(w[0, 0, [0, 2]].sum(-1), torch.ones(2))


# -- a timm-style ViT block, fused and unfused ---------------------------------------------------
class TimmAttention(nn.Module):
    """timm.models.vision_transformer.Attention, as written there."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, fused: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            q = q * self.scale
            attn = q @ k.transpose(-2, -1)
            attn = attn.softmax(dim=-1)
            attn = self.attn_drop(attn)
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TimmBlock(nn.Module):
    def __init__(self, dim: int, heads: int, fused: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TimmAttention(dim, heads, qkv_bias=True, fused=fused)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTimmViT(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, depth: int = 2, fused: bool = True):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 8, 8)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(TimmBlock(dim, heads, fused) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(self.blocks(x))


def _timm_by_hand(model: TinyTimmViT, images: torch.Tensor) -> list[torch.Tensor]:
    """Each block's weights, softmax(q kᵀ / √d), from the input its attention received."""
    seen: list[torch.Tensor] = []
    hooks = [b.attn.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach())) for b in model.blocks]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    out = []
    for block, x in zip(model.blocks, seen):
        a = block.attn
        B, N, C = x.shape
        qkv = (x @ a.qkv.weight.T + a.qkv.bias).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k = qkv[0].double(), qkv[1].double()
        out.append(torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(a.head_dim), dim=-1))
    return out


@pytest.mark.parametrize("fused", [True, False])
def test_timm_attention_fused_and_unfused(fused):
    torch.manual_seed(0)
    model = TinyTimmViT(fused=fused).eval()
    images = torch.randn(2, 3, 32, 32)
    want = _timm_by_hand(model, images)
    paths = [p for p, m in model.named_modules() if attention.is_attention(m)]
    assert paths == ["blocks.0.attn", "blocks.1.attn"]
    store: dict = {}
    with torch.no_grad(), attention.recording(model, paths, store):
        model(images)
    got = [store[p] for p in paths]
    for g, w in zip(got, want):
        assert g.shape == (2, 4, 17, 17)
        assert (g.double() - w).abs().max().item() < TOL


def test_multihead_attention_still_read_through_its_own_weights():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        _, want = layer.self_attn(x, x, x, need_weights=True, average_attn_weights=False)
    store: dict = {}
    with torch.no_grad(), attention.recording(layer, ["self_attn"], store):
        layer(x)
    assert (store["self_attn"] - want).abs().max().item() < 1e-6


def test_only_the_innermost_selected_module_gets_a_call():
    torch.manual_seed(0)
    model = TinyTimmViT(fused=True).eval()
    store: dict = {}
    with torch.no_grad(), attention.recording(model, ["blocks.0.attn"], store):
        model(torch.randn(1, 3, 32, 32))
    assert list(store) == ["blocks.0.attn"]  # blocks.1.attn's call counts for nobody


def test_probe_shape_for_explain():
    model = _hf("t5", "eager")
    shapes: dict = {}

    def hook(path):
        def on(module, args, kwargs, output):
            shapes.setdefault(path, attention.probe_shape(module, args, kwargs, output))

        return on

    handles = [
        m.register_forward_hook(hook(p), with_kwargs=True)
        for p, m in model.named_modules()
        if attention.is_attention(m)
    ]
    with torch.no_grad():
        model(**_inputs("t5"))
    for h in handles:
        h.remove()
    assert shapes["encoder.block.0.layer.0.SelfAttention"] == (2, 4, 7, 7)
    assert shapes["decoder.block.0.layer.1.EncDecAttention"] == (2, 4, 5, 7)


# -- messages ----------------------------------------------------------------------------------
class NotReallyAttention(nn.Module):
    """Named like attention, computes none nnspec can read."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = NotReallyAttention()

    def forward(self, x):
        return self.attn(x)


def _spec(*queries: str) -> dict:
    return {"nnspec": 1, "views": [{"query": q} for q in queries]}


def test_a_selected_module_without_attention_says_what_was_looked_for():
    dash = nnspec.render(_spec("attention of attn"), model=Wrapper(), inputs=torch.randn(2, 3, 4))
    err = dash.views[0].error
    assert err is not None and capture_messages.attention_not_called("attn") in err
    assert "scaled_dot_product_attention" in err and "softmax" in err


def test_no_attention_module_says_what_it_looked_for():
    text = compiler_messages.no_attention(["Linear", "ReLU"])
    assert "MultiheadAttention" in text and "'Attention' or 'Attn'" in text and "Linear, ReLU" in text
    dash = nnspec.render(_spec("attention of *"), model=nn.Sequential(nn.Linear(4, 4)), inputs=torch.randn(2, 4))
    assert "'Attention' or 'Attn'" in dash.views[0].error


# -- end to end: views -------------------------------------------------------------------------
WORDS = ["the", "cat", "sat", "on", "the", "mat", "today"]


def _gpt2_spec(*queries: str, tokens=WORDS) -> dict:
    return {
        "nnspec": 1,
        "input": {"kwargs": {"input_ids": {"tokens": list(tokens)}}},
        "views": [{"query": q} for q in queries],
    }


def _gpt2_reference(impl="eager"):
    model = _hf("gpt2", impl)
    ids = torch.tensor([[list(dict.fromkeys(WORDS)).index(w) for w in WORDS]])
    with torch.no_grad():
        ref = model(input_ids=ids, output_attentions=True).attentions
    return model, ref


def test_render_heads_grid_equals_hugging_face():
    model, ref = _gpt2_reference()
    sdpa = _hf("gpt2", "sdpa")
    (v,) = nnspec.render(_gpt2_spec("attention of h.1.attn"), model=sdpa).views
    assert v.error is None, v.error
    df = v.data
    assert sorted(df["head"].unique()) == [0, 1, 2, 3]
    got = torch.tensor(df.sort_values(["head", "query", "key"])["weight"].to_numpy()).reshape(4, 7, 7)
    assert (got - ref[1][0].double()).abs().max().item() < TOL
    assert list(df[df["head"] == 0]["key_label"][:3]) == ["0:the", "1:cat", "2:sat"]
    spec = v.chart.to_dict()
    assert spec["columns"] == 4  # heads wrapped into rows of at most 4


def test_render_one_head_by_index():
    model, ref = _gpt2_reference()
    (v,) = nnspec.render(_gpt2_spec("attention of h.0.attn [0, 2]"), model=model).views
    assert v.error is None, v.error
    assert set(v.data["head"]) == {2}  # the head the index picked, not 0
    got = torch.tensor(v.data.sort_values(["query", "key"])["weight"].to_numpy()).reshape(7, 7)
    assert (got - ref[0][0, 2].double()).abs().max().item() < TOL
    assert "facet" not in v.chart.to_dict()


def test_render_a_range_of_positions_keeps_their_labels():
    model, ref = _gpt2_reference()
    (v,) = nnspec.render(_gpt2_spec("attention of h.0.attn [0, 1, 2:5, 0:3]"), model=model).views
    assert v.error is None, v.error
    assert sorted(set(v.data["query"])) == [2, 3, 4] and sorted(set(v.data["key"])) == [0, 1, 2]
    assert set(v.data["query_label"]) == {"2:sat", "3:on", "4:the"}
    row = v.data[v.data["query"] == 3].sort_values("key")["weight"].to_numpy()
    assert abs(row - ref[0][0, 1, 3, :3].numpy()).max() < TOL


def test_render_overview_layers_by_heads():
    (v,) = nnspec.render(_gpt2_spec("attention of *"), model=_hf("gpt2", "sdpa")).views
    assert v.error is None, v.error
    facet = v.chart.to_dict()["facet"]
    assert facet["row"]["field"] == "layer" and facet["column"]["field"] == "head"
    (v,) = nnspec.render(
        _gpt2_spec("attention of h.0.attn | heatmap(layout=overview)"), model=_hf("gpt2", "sdpa")
    ).views
    assert v.chart.to_dict()["facet"]["row"]["field"] == "layer"
    (v,) = nnspec.render(_gpt2_spec("attention of * | heatmap(layout=heads)"), model=_hf("gpt2", "sdpa")).views
    assert [c["title"] for c in v.chart.to_dict()["vconcat"]] == ["h.0.attn", "h.1.attn"]


def test_render_t5_cross_attention_equals_hugging_face():
    ref = _reference("t5")
    spec = {
        "nnspec": 1,
        "views": [
            {"query": "attention of decoder.block.1.layer.1.EncDecAttention"},
            {"query": "attention of encoder.*"},
        ],
    }
    dash = nnspec.render(spec, model=_hf("t5", "sdpa"), inputs=_inputs("t5"))
    cross, enc = dash.views
    assert cross.error is None and enc.error is None
    got = torch.tensor(cross.data.sort_values(["head", "query", "key"])["weight"].to_numpy()).reshape(4, 5, 7)
    assert (got - ref["decoder.block.1.layer.1.EncDecAttention"][0].double()).abs().max().item() < TOL


def test_long_sequences_stay_within_the_mark_budget():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=600)
        model = transformers.GPT2Model(cfg).eval()
    ids = torch.randint(0, 100, (1, 520))
    model.set_attn_implementation("eager")
    with torch.no_grad():
        ref = model(input_ids=ids, output_attentions=True).attentions
    model.set_attn_implementation("sdpa")
    views = ["attention of h.0.attn", "attention of *", "attention of h.1.attn [0, 1, 100:400, 100:400]"]
    heads, overview, zoom = nnspec.render(_spec(*views), model=model, inputs={"input_ids": ids}).views
    for v in (heads, overview, zoom):
        assert v.error is None, v.error
        assert len(v.data) <= 10_000
        assert {"query_end", "key_end"} <= set(v.data.columns)
    for v in (heads, overview):  # an image per head, every weight one pixel
        assert any("every weight one pixel" in n for n in v.notes)
    # a range from position 100 (no image can say where it starts): block maxima, said so
    assert any("largest weight of its block" in n for n in zoom.notes)
    assert zoom.data["query"].min() == 100 and zoom.data["key_end"].max() == 400
    for i in (0, 37, len(zoom.data) - 1):
        cell = zoom.data.iloc[i]
        q0, q1, k0, k1 = (int(cell[c]) for c in ("query", "query_end", "key", "key_end"))
        assert abs(cell["weight"] - ref[1][0, 1, q0:q1, k0:k1].max().item()) < TOL
