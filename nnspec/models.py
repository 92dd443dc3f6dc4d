"""Small models that ship with nnspec, for the specs, tests and benchmarks.

Each is an ordinary ``nn.Module``; spec files name them as
``nnspec.models:MLP`` and nnspec seeds torch before building them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Module):
    """Fully connected layers ``fc1``, ``fc2``, … with an activation module after each hidden one.

    >>> MLP([2, 3, 1])
    MLP(...)
    """

    def __init__(self, sizes=(2, 3, 1), activation: str = "relu"):
        super().__init__()
        sizes = list(sizes)
        for i, (a, b) in enumerate(zip(sizes, sizes[1:]), start=1):
            self.add_module(f"fc{i}", nn.Linear(a, b))
            if i < len(sizes) - 1:
                self.add_module(f"act{i}", ACTIVATIONS[activation]())

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus the identity (or a 1×1 projection), then relu."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """A residual CNN: a stem, stages of BasicBlocks, global pooling, a classifier.

    ``ResNet(widths=(64, 128, 256, 512), blocks=2)`` is ResNet-18 shaped;
    ``blocks=(3, 4, 6, 3)`` gives ResNet-34/50's stage depths.
    """

    def __init__(self, in_channels: int = 3, widths=(16, 32), blocks: int = 2, classes: int = 10):
        super().__init__()
        widths = list(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages = []
        c_in = widths[0]
        per_stage = [blocks] * len(widths) if isinstance(blocks, int) else list(blocks)
        for i, (w, n) in enumerate(zip(widths, per_stage)):
            layers = [BasicBlock(c_in, w, 1 if i == 0 else 2)] + [BasicBlock(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class GPTBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A decoder-only transformer; the defaults are GPT-2-small shaped (124M parameters)."""

    def __init__(
        self,
        vocab: int = 50257,
        ctx: int = 1024,
        d: int = 768,
        layers: int = 12,
        heads: int = 12,
    ):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.blocks = nn.Sequential(*[GPTBlock(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as in GPT-2
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.blocks(self.wte(idx) + self.wpe(pos))
        return self.head(self.ln_f(x))


class TinyEncoder(nn.Module):
    """A small Transformer encoder classifier: token and position embeddings,
    ``nn.TransformerEncoder`` layers (``nn.MultiheadAttention`` inside), a mean
    pool and a linear head."""

    def __init__(self, vocab: int = 32, d: int = 32, heads: int = 4, layers: int = 2, ctx: int = 64, classes: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens):
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.encoder(self.embed(tokens) + self.pos(pos))
        return self.head(x.mean(dim=1))
