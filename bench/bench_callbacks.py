"""Recording at scale through each training framework (issue 14): a GPT-2 small
(124M parameters, from its config; random weights) training step at batch 2×128,
recording every step the stats and 64-bin histograms of every parameter and
gradient and the loss, as a ratio to the same step without recording:

    hand loop + Recorder         torch.optim.AdamW, rec.step() by hand
    Hugging Face Trainer         NnspecCallback vs none (max_steps=K per timing)
    PyTorch Lightning            NnspecCallback vs none

Timings are interleaved (plain, recorded, plain, recorded, …) medians of the
time per step; the first steps of each configuration are warm-up.

    python bench/bench_callbacks.py [--repeats 3] [--steps 3] [--size small|tiny]

``--size tiny`` (2 layers, width 64) is a smoke test of this script.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BINS = 64
VIEWS = [
    "loss over steps",
    "params of * over steps | stats",
    f"params of * over steps | histogram(bins={BINS})",
    "grads of * over steps | stats",
    f"grads of * over steps | histogram(bins={BINS})",
]
SEQ = 128


def spec() -> dict:
    return {
        "nnspec": 1,
        "title": "GPT-2 small, recorded every step",
        "views": [{"query": q} for q in VIEWS],
    }


def model(size: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config() if size == "small" else GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=1000)
    cfg.n_positions = SEQ
    return GPT2LMHeadModel(cfg).train(), cfg.vocab_size


def batches(vocab: int, n: int):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (2, SEQ), generator=g) for _ in range(n)]


# -- the three ways to train ----------------------------------------------------------------
def hand_loop(size: str, steps: int, record: bool, run: str) -> float:
    from nnspec.runs.recorder import Recorder

    net, vocab = model(size)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    rec = Recorder(spec(), net, run, record_every=1, overwrite=True, optimizer=opt) if record else None
    data = batches(vocab, steps + 1)
    times = []
    for step, ids in enumerate(data):
        t0 = time.perf_counter()
        loss = net(input_ids=ids, labels=ids).loss
        loss.backward()
        if rec is not None:
            rec.step(step, loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    if rec is not None:
        rec.close()
    return statistics.median(times[1:])  # the first step warms up


def hf_trainer(size: str, steps: int, record: bool, run: str) -> float:
    from transformers import Trainer, TrainingArguments

    from nnspec.integrations.transformers import NnspecCallback

    net, vocab = model(size)
    data = [{"input_ids": ids[0], "labels": ids[0]} for ids in batches(vocab, 2 * (steps + 1))]
    out = tempfile.mkdtemp()
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=2,
        max_steps=steps + 1,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    marks: list = []

    class Clock:  # a callback of our own that times each optimizer step
        def __getattr__(self, name):
            return lambda *a, **k: None

        def on_step_begin(self, *a, **k):
            marks.append(time.perf_counter())

    from transformers import TrainerCallback

    clock = type("Clock", (TrainerCallback,), {"on_step_begin": Clock.on_step_begin})()
    callbacks = [clock]
    cb = NnspecCallback(spec(), run=run, record_every=1) if record else None
    if cb is not None:
        callbacks.append(cb)
    try:
        Trainer(model=net, args=args, train_dataset=data, callbacks=callbacks).train()
        marks.append(time.perf_counter())
    finally:
        if cb is not None:
            cb.close(finished=True)
        shutil.rmtree(out, ignore_errors=True)
    steps_s = [b - a for a, b in zip(marks, marks[1:])]
    return statistics.median(steps_s[1:])


def lightning(size: str, steps: int, record: bool, run: str) -> float:
    import lightning as L

    from nnspec.integrations.lightning import NnspecCallback

    net, vocab = model(size)
    data = batches(vocab, steps + 1)
    marks: list = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, ids, i):
            marks.append(time.perf_counter())
            return self.net(input_ids=ids, labels=ids).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-4)

    callbacks = [NnspecCallback(spec(), run=run, record_every=1)] if record else []
    trainer = L.Trainer(
        max_steps=steps + 1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    trainer.fit(Module(), loader)
    marks.append(time.perf_counter())
    steps_s = [b - a for a, b in zip(marks, marks[1:])]
    return statistics.median(steps_s[1:])


WAYS = {
    "hand loop + Recorder": hand_loop,
    "HF Trainer + NnspecCallback": hf_trainer,
    "Lightning + NnspecCallback": lightning,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--size", choices=("small", "tiny"), default="small")
    ap.add_argument("--only", default="", help="comma-separated subset of: hand, hf, lightning")
    args = ap.parse_args()
    keys = {
        "hand": "hand loop + Recorder",
        "hf": "HF Trainer + NnspecCallback",
        "lightning": "Lightning + NnspecCallback",
    }
    ways = [keys[k] for k in args.only.split(",") if k] or list(WAYS)
    net, _ = model(args.size)
    n_params = sum(p.numel() for p in net.parameters())
    del net
    print(
        f"GPT-2 {args.size}: {n_params / 1e6:.1f}M parameters, batch 2×{SEQ}, torch threads {torch.get_num_threads()}"
    )
    root = tempfile.mkdtemp()
    try:
        for name in ways:
            fn = WAYS[name]
            plain, recorded = [], []
            for r in range(args.repeats):  # interleaved: plain, recorded, plain, recorded, …
                plain.append(fn(args.size, args.steps, False, os.path.join(root, f"p{r}")))
                recorded.append(fn(args.size, args.steps, True, os.path.join(root, f"{name[:2]}{r}")))
            ratios = [b / a for a, b in zip(plain, recorded)]
            print(
                f"{name:30s} step {statistics.median(plain):.3f} s → {statistics.median(recorded):.3f} s recorded: "
                f"{statistics.median(ratios):.2f}× (min {min(ratios):.2f}, max {max(ratios):.2f})"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
