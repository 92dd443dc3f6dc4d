"""Capture overhead on a full-size Hugging Face GPT-2 small, built from its
config (124M parameters, random weights: nothing downloads), batch 2×128
tokens with an attention mask: ``activations of * | stats`` and ``attention
of *`` against the plain forward pass, under the attention implementation
the model runs (``eager`` and ``sdpa``). Prints a Markdown table of ratios
measured side by side in one run.

    pip install -e '.[hf]' && python bench/bench_hf.py [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import bench_args, human_bytes, interleaved, sync
from nnspec.backends.base import Call
from nnspec.capture import run as capture
from nnspec.compiler.compile import compile_plan
from nnspec.compiler.explain import kept_bytes
from nnspec.inputs.batch import Batch
from nnspec.spec.load import load_spec

QUERIES = ("activations of * | stats", "attention of *")


def gpt2(attn: str, device):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(attn_implementation=attn)).to(device).eval()


def main():
    args, device = bench_args()
    ids = torch.randint(0, 50257, (2, 128), generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones_like(ids)
    batch = Batch(Call((), {"input_ids": ids, "attention_mask": mask}))
    rows = []
    for attn in ("eager", "sdpa"):
        model = gpt2(attn, device)
        plans = {q: compile_plan(load_spec({"nnspec": 1, "views": [{"query": q}]}), model) for q in QUERIES}

        def plain(model=model):
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask)
            sync(device)

        fns = {"plain": plain}
        for q, plan in plans.items():
            fns[q] = lambda plan=plan, model=model: (capture.run(plan, model, batch), sync(device))
        t = interleaved(fns, repeats=args.repeats)
        for q, plan in plans.items():
            kept = sum(kept_bytes(c, None) or 0 for c in plan.captures)
            hooked = len(plan.hooked) if q.startswith("activations") else len(plan.captures)
            rows.append((attn, q, hooked, f"{t[q] / t['plain']:.2f}×", human_bytes(kept) if kept else "–"))
        rows.append((attn, "plain forward", "–", f"{t['plain']:.3f} s", "–"))
        del model
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| attention | query | modules | time ÷ plain forward | bytes kept |")
    print("| --- | --- | ---: | ---: | ---: |")
    for attn, q, hooked, ratio, kept in rows:
        q = q if q == "plain forward" else "`" + q.replace("|", "\\|") + "`"
        print(f"| {attn} | {q} | {hooked} | {ratio} | {kept} |")


if __name__ == "__main__":
    main()
