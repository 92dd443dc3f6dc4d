"""Capture overhead of the ONNX backend: a ResNet-18-shaped CNN
(``nnspec.models:ResNet(widths=(64, 128, 256, 512), blocks=2, classes=1000)``)
exported with ``torch.onnx.export(..., dynamo=True)`` to a temporary file and run
by ONNX Runtime (CPU) on 8×3×64×64: ``activations of * | stats`` (every module's
output added to the graph's outputs, reduced in torch) against a plain
``session.run`` of the file, side by side in one process. Prints a Markdown table.

    pip install -e '.[onnx]' onnxscript && python bench/bench_onnx.py [--repeats 9]
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import bench_args, human_bytes, interleaved
from nnspec.backends import backend_for
from nnspec.backends.base import Call
from nnspec.backends.onnx.files import load
from nnspec.capture import run as capture
from nnspec.compiler.compile import compile_plan
from nnspec.compiler.explain import kept_bytes
from nnspec.inputs.batch import Batch
from nnspec.models import ResNet
from nnspec.spec.load import load_spec

QUERIES = ("activations of * | stats", "activations of type(Conv) | stats", "graph")
TORCH_QUERY = "activations of * | stats"


def main():
    args, _ = bench_args()
    torch.manual_seed(0)
    model = ResNet(widths=(64, 128, 256, 512), blocks=2, classes=1000).eval()
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet18.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), path, dynamo=True, external_data=False, verbose=False)
        onnx_model = load(path)
        be = backend_for(onnx_model)
        feeds = {onnx_model.proto.graph.input[0].name: x.numpy()}
        session = onnx_model.session()
        batch = Batch(Call((x,)))
        plans = {q: compile_plan(load_spec({"nnspec": 1, "views": [{"query": q}]}), be) for q in QUERIES}

        def plain():
            session.run(None, feeds)

        def torch_forward():
            with torch.no_grad():
                model(x)

        torch_plan = compile_plan(load_spec({"nnspec": 1, "views": [{"query": TORCH_QUERY}]}), model)
        fns = {"plain": plain, "torch": torch_forward, "torch capture": lambda: capture.run(torch_plan, model, batch)}
        for q, plan in plans.items():
            fns[q] = lambda plan=plan: capture.run(plan, be, batch)
        t = interleaved(fns, repeats=args.repeats)
        size = os.path.getsize(path)
    import onnxruntime

    print(
        f"ONNX Runtime {onnxruntime.__version__} (CPU), torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{len(onnx_model.proto.graph.node)} nodes, {be.size():,} parameters ({human_bytes(size)} file)\n"
    )
    print("| query | modules | time | ÷ plain session.run | bytes kept |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| plain `session.run` | – | {t['plain'] * 1e3:.1f} ms | 1.00× | – |")
    print(
        f"| torch forward of the model it was exported from (no_grad) | – | {t['torch'] * 1e3:.1f} ms "
        f"| {t['torch'] / t['plain']:.2f}× | – |"
    )
    cell = "`" + TORCH_QUERY.replace("|", "\\|") + "`"
    print(
        f"| {cell} on the torch model (PyTorch backend, {len(torch_plan.hooked)} modules) | – "
        f"| {t['torch capture'] * 1e3:.1f} ms | {t['torch capture'] / t['plain']:.2f}× | – |"
    )
    for q, plan in plans.items():
        kept = sum(kept_bytes(c, None) or 0 for c in plan.captures)
        hooked = len(plan.hooked) if q.startswith("activations") else "all"
        cell = "`" + q.replace("|", "\\|") + "`"
        shown = human_bytes(kept) if kept else "–"
        print(f"| {cell} | {hooked} | {t[q] * 1e3:.1f} ms | {t[q] / t['plain']:.2f}× | {shown} |")


if __name__ == "__main__":
    main()
