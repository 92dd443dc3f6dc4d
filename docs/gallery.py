"""Regenerate docs/gallery.md and docs/gallery/*.png: one picture of every
view type with the query that made it. Run from the repository root:

    python docs/gallery.py [OUT_DIR]

Each entry is a shipped spec and one of its views (or a query run against
that spec's model and input), so the gallery shows exactly what users get.
"""

from __future__ import annotations

import os
import sys

import vl_convert as vlc

import nnspec
from nnspec.output.convert import vl_version
from nnspec.output.files import slug, write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (what it shows, spec under specs/, query)
ENTRIES = [
    ("Weight heatmap", "quickstart.yaml", "weights of fc1 | heatmap"),
    (
        "Beyond the mark budget: an image at the true range (max_marks: 2000)",
        "cnn.yaml",
        "weights of stages.1.1.conv2 | flatten | heatmap",
    ),
    ("Histogram of activations", "quickstart.yaml", "activations of act1 | histogram(bins=30)"),
    ("Per-layer statistics as a table", "cnn.yaml", "activations of type(BasicBlock) | stats | table"),
    ("Dead units (share of zeros) as bars", "cnn.yaml", "activations of type(ReLU) | stats | bar(y=zero_frac)"),
    ("Gradient flow", "cnn.yaml", "grads of *conv*.weight | abs | mean | bar"),
    ("A value per layer as a line", "cnn.yaml", "activations of type(BasicBlock) | std | line"),
    ("Box plot per layer", "cnn.yaml", "weights of type(Conv2d) | box"),
    ("Architecture graph", "cnn.yaml", "graph(depth=3)"),
    (
        "Architecture graph, left to right, coloured by parameters",
        "transformer.yaml",
        "graph(depth=3, direction=LR, color=params)",
    ),
    ("Architecture coloured by another query", "cnn.yaml", 'graph(depth=3, color="grads of *.weight | norm")'),
    ("Layer summary", "transformer.yaml", "summary"),
    ("Conv filters as images", "cnn.yaml", "weights of stem.0 | images(cols=12)"),
    ("Feature maps as images", "cnn.yaml", "activations of stem.2 [0] | channels | images(cols=8)"),
    ("Attention per head, labelled with tokens", "transformer.yaml", "attention of encoder.layers.0.self_attn"),
    ("Attention of a Hugging Face GPT-2, all heads of a layer", "gpt2.yaml", "attention of transformer.h.0.attn"),
    ("Attention, every layer × every head", "gpt2.yaml", "attention of * | heatmap(layout=overview)"),
    ("Architecture of a Hugging Face GPT-2 (keyword inputs, residual adds)", "gpt2.yaml", "graph"),
    ("Gradient flow with the model's own loss", "gpt2.yaml", "grads of *.weight | norm | bar"),
    ("Activation functions and derivatives", "transformer.yaml", "function relu, gelu, tanh, sigmoid over [-5, 5]"),
    ("Saliency over images", "cnn.yaml", "input_grads [:4]"),
    ("Saliency per feature (tabular)", "quickstart.yaml", "input_grads"),
    ("PCA of activations (the projector, static)", "transformer.yaml", "activations of encoder [0] | pca(k=2)"),
    ("Gradient norms over training", "health.yaml", "grads of *.weight over steps | norm | line(log=true)"),
    ("Activation statistics over training", "health.yaml", "activations of type(ReLU) over steps | stats"),
    ("Weight distributions over training (ridgeline)", "health.yaml", "weights of fc2 over steps | histogram(bins=30)"),
]


# entries drawn with a smaller mark budget than the default, to show what it does
MAX_MARKS = {"Beyond the mark budget: an image at the true range (max_marks: 2000)": 2000}


def render_entry(spec_name: str, query: str, title: str):
    """The entry's view rendered with its spec's model and input."""
    import dataclasses

    from nnspec.spec.load import DEFAULT_MAX_MARKS, ViewSpec

    spec = nnspec.load_spec(os.path.join(ROOT, "specs", spec_name))
    view = ViewSpec(query=query, title=title, max_marks=MAX_MARKS.get(title, DEFAULT_MAX_MARKS))
    one = dataclasses.replace(spec, views=(view,))
    return nnspec.render(one).views[0]


def main(out_dir: str = os.path.join(ROOT, "docs")) -> None:
    lines = [
        "# Gallery",
        "",
        "Every view type nnspec draws, with the query that made it and the shipped spec",
        "it ran against. Regenerate with `python docs/gallery.py`.",
        "",
    ]
    taken: set[str] = set()
    for title, spec_name, query in ENTRIES:
        v = render_entry(spec_name, query, title)
        if v.error:
            raise SystemExit(f"{title}: {v.error}")
        name = slug(title, taken)
        png = vlc.vegalite_to_png(v.vega_lite(), vl_version=vl_version(), scale=1)
        write_atomic(os.path.join(out_dir, "gallery", f"{name}.png"), png)
        lines += [
            f"## {title}",
            "",
            f"`specs/{spec_name}`:",
            "",
            "```",
            query,
            "```",
            "",
            f"![{title}](gallery/{name}.png)",
            "",
        ]
    write_atomic(os.path.join(out_dir, "gallery.md"), "\n".join(lines))
    print(os.path.join(out_dir, "gallery.md"))


if __name__ == "__main__":
    main(*sys.argv[1:])
