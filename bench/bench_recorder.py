"""Recorder overhead per recorded step, against the plain training step, with
TensorBoard's ``add_histogram`` and a wandb-``watch``-style hook logger side
by side in the same run; and disk bytes per recorded step.

Content recorded by all three, every step: stats and 64-bin histograms of
every parameter and of its gradient, of a ResNet-18-shaped CNN (8×3×64×64).

    python bench/bench_recorder.py [--repeats 5] [--device cpu|cuda]

Needs ``tensorboard`` (``pip install -e '.[bench]'``) for its rows; without it
(a GPU machine's bare image) the others still run.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import bench_args, human_bytes, interleaved, sync
from nnspec.models import ResNet
from nnspec.runs.recorder import Recorder
from nnspec.spec.load import load_spec

BINS = 64
VIEWS = [
    f"params of * over steps | histogram(bins={BINS})",
    "params of * over steps | stats",
    f"grads of * over steps | histogram(bins={BINS})",
    "grads of * over steps | stats",
]


def setup(device):
    torch.manual_seed(0)
    model = ResNet(widths=(64, 128, 256, 512), blocks=2, classes=10).to(device)
    x = torch.randn(8, 3, 64, 64, device=device)
    y = torch.randint(0, 10, (8,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    return model, x, y, opt


class WatchLogger:
    """What ``wandb.watch(model, log="all")`` does, without a server: a tensor
    hook per parameter histograms its gradient (``torch.histc``, 64 bins, plus
    min/max/mean/std) when the gradient arrives; at log time the parameters get
    the same; every number comes to the host and goes out as one JSON line."""

    def __init__(self, model, path):
        self.model = model
        self.f = open(path, "w")
        self.pending = {}
        self.seconds = 0.0  # time spent inside the gradient hooks
        self.handles = [p.register_hook(self._hook(n)) for n, p in model.named_parameters()]

    def _hook(self, name):
        def hook(grad):
            t0 = time.perf_counter()
            self.pending[f"gradients/{name}"] = self._summary(grad)
            self.seconds += time.perf_counter() - t0

        return hook

    @staticmethod
    def _summary(t):
        t = t.detach().float()
        lo, hi = float(t.min()), float(t.max())
        return {
            "bins": [lo, hi],
            "counts": torch.histc(t, bins=BINS, min=lo, max=hi).tolist(),
            "mean": float(t.mean()),
            "std": float(t.std()) if t.numel() > 1 else 0.0,
        }

    def log(self, step):
        for name, p in self.model.named_parameters():
            self.pending[f"parameters/{name}"] = self._summary(p)
        self.f.write(json.dumps({"step": step, **self.pending}) + "\n")
        self.f.flush()
        self.pending = {}

    def close(self):
        for h in self.handles:
            h.remove()
        self.f.close()


def main():
    args, device = bench_args()
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        SummaryWriter = None

    model, x, y, opt = setup(device)
    tmp = tempfile.mkdtemp(prefix="nnspec-bench-")
    spec = load_spec({"nnspec": 1, "views": [{"query": q} for q in VIEWS]})
    rec = Recorder(spec, model, run=os.path.join(tmp, "run"), record_every=1)
    rec._disarm()  # armed only around the recorded steps below
    tb = SummaryWriter(os.path.join(tmp, "tb")) if SummaryWriter else None
    counter = {"rec": 0, "tb": 0, "watch": 0}
    own = {"recorder": [], "tensorboard": [], "tensorboard_default": [], "watch": []}  # the logger's own seconds

    def train_step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    def finish():
        opt.step()
        opt.zero_grad()
        sync(device)

    def plain():
        train_step()
        finish()

    def recorded():
        rec._arm()
        loss = train_step()
        t0 = time.perf_counter()
        rec.step(counter["rec"], loss=loss)
        own["recorder"].append(time.perf_counter() - t0)
        rec._disarm()
        counter["rec"] += 1
        finish()

    def tensorboard(writer=tb, key="tb", bins=BINS, label="tensorboard"):
        loss = train_step()
        step = counter[key]
        t0 = time.perf_counter()
        for name, p in model.named_parameters():
            writer.add_histogram(f"parameters/{name}", p, step, bins=bins)
            writer.add_histogram(f"gradients/{name}", p.grad, step, bins=bins)
        writer.add_scalar("loss", float(loss.detach()), step)
        writer.flush()
        own[label].append(time.perf_counter() - t0)
        counter[key] += 1
        finish()

    tb_default = SummaryWriter(os.path.join(tmp, "tb-default")) if SummaryWriter else None
    counter["tb_default"] = 0

    def tensorboard_default():  # what users get without bins=: 'tensorflow' exponential buckets
        tensorboard(tb_default, "tb_default", "tensorflow", "tensorboard_default")

    watch_holder = {}

    def watched():
        logger = watch_holder.setdefault("logger", WatchLogger(model, os.path.join(tmp, "watch.jsonl")))
        loss = train_step()
        t0 = time.perf_counter()
        logger.pending["loss"] = float(loss.detach())
        logger.log(counter["watch"])
        own["watch"].append(time.perf_counter() - t0 + logger.seconds)
        counter["watch"] += 1
        finish()
        logger.close()  # its hooks must not fire in the other variants' steps
        watch_holder.pop("logger")

    fns = {"plain": plain, "recorder": recorded, "tensorboard": tensorboard}
    fns |= {"tensorboard_default": tensorboard_default, "watch": watched}
    if SummaryWriter is None:
        fns = {k: fn for k, fn in fns.items() if not k.startswith("tensorboard")}
    t = interleaved(fns, repeats=args.repeats)
    rec.close()
    for writer in (tb, tb_default):
        if writer is not None:
            writer.close()
    paths = {"tensorboard_default": "tb-default", "recorder": "run", "tensorboard": "tb", "watch": "watch.jsonl"}
    counts = {"tensorboard_default": "tb_default", "recorder": "rec", "tensorboard": "tb", "watch": "watch"}
    sizes = {k: _size(os.path.join(tmp, paths[k])) / counter[counts[k]] for k in paths if k in fns}
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: ResNet-18-shaped CNN, {n_params:,} parameters in {len(list(model.parameters()))} tensors, 8×3×64×64")
    print(f"content per recorded step: stats + {BINS}-bin histogram of every parameter and every gradient\n")
    print(
        "| logger | its own time per recorded step ÷ plain step | ÷ recorder's | whole step ÷ plain step | disk per recorded step |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    base = t["plain"]
    kinds = tuple(k for k in ("recorder", "tensorboard", "tensorboard_default", "watch") if k in fns)
    extra = {k: statistics.median(own[k][-args.repeats :]) for k in kinds}
    names = {
        "recorder": "nnspec Recorder (SQLite, WAL)",
        "tensorboard": f"TensorBoard `add_histogram(bins={BINS})`",
        "tensorboard_default": "TensorBoard `add_histogram` (default bins)",
        "watch": "wandb-`watch`-style hooks",
    }
    for k in kinds:
        ratio = extra[k] / extra["recorder"] if extra["recorder"] > 0 else float("nan")
        print(f"| {names[k]} | {extra[k] / base:.3f} | {ratio:.1f}× | {t[k] / base:.2f} | {human_bytes(sizes[k])} |")
    print(f"| plain training step | {base:.3f} s | – | 1.00 | – |")
    shutil.rmtree(tmp, ignore_errors=True)


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


if __name__ == "__main__":
    main()
