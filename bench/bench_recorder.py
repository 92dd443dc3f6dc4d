"""Recorder overhead per recorded step, against the plain training step, with
TensorBoard's ``add_histogram`` and a wandb-``watch``-style hook logger side
by side in the same run; and disk bytes per recorded step.

Content recorded by all three, every step: stats and 64-bin histograms of
every parameter and of its gradient, of a ResNet-18-shaped CNN (8×3×64×64).

    python bench/bench_recorder.py [--repeats 5] [--device cpu|cuda]

Needs ``tensorboard`` (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import bench_args, human_bytes, interleaved, sync
from nnspec.models import ResNet
from nnspec.record import Recorder
from nnspec.spec import load_spec

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
        self.handles = [p.register_hook(self._hook(n)) for n, p in model.named_parameters()]

    def _hook(self, name):
        def hook(grad):
            self.pending[f"gradients/{name}"] = self._summary(grad)

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
    from torch.utils.tensorboard import SummaryWriter

    model, x, y, opt = setup(device)
    tmp = tempfile.mkdtemp(prefix="nnspec-bench-")
    spec = load_spec({"nnspec": 1, "views": [{"query": q} for q in VIEWS]})
    rec = Recorder(spec, model, run=os.path.join(tmp, "run"), record_every=1)
    rec._disarm()  # armed only around the recorded steps below
    tb = SummaryWriter(os.path.join(tmp, "tb"))
    counter = {"rec": 0, "tb": 0, "watch": 0}

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
        rec.step(counter["rec"], loss=loss)
        rec._disarm()
        counter["rec"] += 1
        finish()

    def tensorboard(writer=tb, key="tb", bins=BINS):
        loss = train_step()
        step = counter[key]
        for name, p in model.named_parameters():
            writer.add_histogram(f"parameters/{name}", p, step, bins=bins)
            writer.add_histogram(f"gradients/{name}", p.grad, step, bins=bins)
        writer.add_scalar("loss", float(loss.detach()), step)
        writer.flush()
        counter[key] += 1
        finish()

    tb_default = SummaryWriter(os.path.join(tmp, "tb-default"))
    counter["tb_default"] = 0

    def tensorboard_default():  # what users get without bins=: 'tensorflow' exponential buckets
        tensorboard(tb_default, "tb_default", "tensorflow")

    watch_holder = {}

    def watched():
        logger = watch_holder.setdefault("logger", WatchLogger(model, os.path.join(tmp, "watch.jsonl")))
        loss = train_step()
        logger.pending["loss"] = float(loss)
        logger.log(counter["watch"])
        counter["watch"] += 1
        finish()
        logger.close()  # its hooks must not fire in the other variants' steps
        watch_holder.pop("logger")

    t = interleaved(
        {
            "plain": plain,
            "recorder": recorded,
            "tensorboard": tensorboard,
            "tensorboard_default": tensorboard_default,
            "watch": watched,
        },
        repeats=args.repeats,
    )
    rec.close()
    tb.close()
    tb_default.close()
    sizes = {
        "tensorboard_default": _size(os.path.join(tmp, "tb-default")) / counter["tb_default"],
        "recorder": _size(os.path.join(tmp, "run")) / counter["rec"],
        "tensorboard": _size(os.path.join(tmp, "tb")) / counter["tb"],
        "watch": _size(os.path.join(tmp, "watch.jsonl")) / counter["watch"],
    }
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: ResNet-18-shaped CNN, {n_params:,} parameters in {len(list(model.parameters()))} tensors, 8×3×64×64")
    print(f"content per recorded step: stats + {BINS}-bin histogram of every parameter and every gradient\n")
    print("| logger | extra time per recorded step ÷ plain step | ÷ recorder's extra | disk per recorded step |")
    print("| --- | ---: | ---: | ---: |")
    base = t["plain"]
    kinds = ("recorder", "tensorboard", "tensorboard_default", "watch")
    extra = {k: t[k] - base for k in kinds}
    names = {
        "recorder": "nnspec Recorder (SQLite, WAL)",
        "tensorboard": f"TensorBoard `add_histogram(bins={BINS})`",
        "tensorboard_default": "TensorBoard `add_histogram` (default bins)",
        "watch": "wandb-`watch`-style hooks",
    }
    for k in kinds:
        ratio = extra[k] / extra["recorder"] if extra["recorder"] > 0 else float("nan")
        print(f"| {names[k]} | {extra[k] / base:.2f} | {ratio:.1f}× | {human_bytes(sizes[k])} |")
    print(f"| plain training step | {base:.3f} s | – | – |")
    shutil.rmtree(tmp, ignore_errors=True)


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


if __name__ == "__main__":
    main()
