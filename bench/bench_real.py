"""Benchmarks of record for issue 15 (fast on real models): every goal of the issue's
table beside today's figure, each an interleaved ratio (A and B in turn, the ratio
taken per round) given as min–max with the median in brackets.

1. ``gpt2``: Hugging Face GPT-2 small (``GPT2Config()``, built from its config with a
   seed, random weights), batch 2×128: ``activations of * | stats`` and
   ``| histogram(bins=64)`` capture ÷ the plain forward pass.
2. ``resnet``: a ResNet-50-shaped network (tests/vision_models.py, torchvision's
   layout at full width), 8×3×224²: the same two ratios, on 2 torch threads and on 1;
   and the project's ResNet-18-shaped histograms (bench/bench_capture.py's model),
   quiet and with a busy-loop process beside it.
3. ``recorder``: the Recorder on the ResNet-50-shaped network, 4×3×128², stats and
   64-bin histograms of every parameter and gradient: its own time ÷ the plain
   training step, and TensorBoard's ``add_histogram(bins=64)`` + a scalar for the
   same content ÷ the Recorder's time; 1 and 2 threads.
4. ``render``: N weight-histogram views (no forward pass), N = 10, 50, 100: HTML
   render per view, and PNG export per view (the path ``nnspec render`` takes).
5. ``dashboard``: a 22-view dashboard of the ResNet-50-shaped network (2×3×224²):
   the whole ``nnspec render`` process ÷ a floor script that imports torch, builds
   the model and runs forward+backward; HTML only, and HTML+PNG.

    python bench/bench_real.py [--repeats 3] [--quick] [--only gpt2,resnet,recorder,render,dashboard]

``--quick``: smaller inputs and one repeat, to check that it runs. Needs
``transformers`` and ``tensorboard`` (``pip install -e '.[hf,bench]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import busy_beside, fmt_spread, interleaved_ratios, load_average, spread  # noqa: E402

CASES = ("gpt2", "resnet", "recorder", "render", "dashboard")
QUERIES = {"stats": "activations of * | stats", "histogram": "activations of * | histogram(bins=64)"}
RESNET50 = {"width": 64, "classes": 1000}
SYSTEM_FONTCONFIG = "/etc/fonts/fonts.conf"  # named in FONTCONFIG_FILE, nnspec leaves vl-convert's fonts alone  # torchvision's resnet50 size: 25.6 M parameters


class Goals:
    """The rows of the goals table: measure, goal, today's spread, whether it is met."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []
        self.notes: list[str] = []

    def add(self, measure: str, goal: str, today: tuple, limit: float | None, unit: str = "×", at_least=False):
        """A row; met when every round meets ``limit``, "median only" when the median does
        (``limit`` None: a figure without a goal)."""
        med, lo, hi = today

        def ok(v):
            return v >= limit if at_least else v <= limit

        if limit is None:
            met = "–"
        else:
            met = "yes" if ok(lo) and ok(hi) else ("median only" if ok(med) else "no")
        digits = 1 if unit == " ms" else 2
        self.rows.append((measure, goal, fmt_spread(today, unit, digits), met))

    def print(self) -> None:
        print("### issue 15 goals\n")
        print("| measure | goal | today (min–max, median) | met? |")
        print("| --- | ---: | ---: | --- |")
        for row in self.rows:
            print("| " + " | ".join(c.replace("|", "\\|") if "`" in c else c for c in row) + " |")
        print()
        for note in self.notes:
            print(f"- {note}")


# -- capture: GPT-2 small and ResNet-50 -----------------------------------------------------------
def capture_ratios(model, call, repeats: int) -> dict:
    """``{label: spread}`` of capture ÷ plain forward for each of ``QUERIES``, and the plain seconds."""
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.spec.load import load_spec

    plans = {k: compile_plan(load_spec({"nnspec": 1, "views": [{"query": q}]}), model) for k, q in QUERIES.items()}
    batch, run_plain = call

    def plain():
        with torch.no_grad():
            run_plain()

    fns = {"plain": plain}
    for k, plan in plans.items():
        fns[k] = lambda plan=plan: capture.run(plan, model, batch)
    return interleaved_ratios(fns, "plain", repeats=repeats)


def gpt2_case(goals: Goals, repeats: int, quick: bool) -> None:
    from bench.bench_hf import gpt2
    from nnspec.backends.base import Call
    from nnspec.inputs.batch import Batch

    model = gpt2("sdpa", torch.device("cpu"))
    length = 32 if quick else 128
    ids = torch.randint(0, model.config.vocab_size, (2, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    batch = Batch(Call((), {"input_ids": ids, "attention_mask": mask}))
    r = capture_ratios(model, (batch, lambda: model(input_ids=ids, attention_mask=mask)), repeats)
    shape = f"2×{length}"
    goals.add(f"`activations of * | stats` ÷ plain forward, GPT-2 small {shape}", "≤ 1.10×", r["stats"], 1.10)
    goals.add(f"`| histogram(bins=64)` ÷ plain forward, GPT-2 small {shape}", "–", r["histogram"], None)
    goals.notes.append(
        f"GPT-2 small plain forward ({shape}, sdpa, {torch.get_num_threads()} threads): {fmt_spread(r['plain'], ' s', 3)}"
    )


def resnet50(seed: int = 0):
    from tests.vision_models import ResNet50ish

    torch.manual_seed(seed)
    return ResNet50ish(**RESNET50)


def resnet_case(goals: Goals, repeats: int, quick: bool) -> None:
    from nnspec.inputs.batch import Batch

    model = resnet50().eval()
    size = 64 if quick else 224
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    for n in (2, 1):
        torch.set_num_threads(n)
        try:
            r = capture_ratios(model, (Batch.of(x), lambda: model(x)), repeats)
        finally:
            torch.set_num_threads(threads)
        shape = f"8×3×{size}², {n} thread{'s' if n > 1 else ''}"
        goals.add(f"`activations of * | stats` ÷ plain forward, ResNet-50 {shape}", "≤ 1.25×", r["stats"], 1.25)
        goals.add(f"`| histogram(bins=64)` ÷ plain forward, ResNet-50 {shape}", "≤ 1.35×", r["histogram"], 1.35)
        goals.notes.append(f"ResNet-50 plain forward ({shape}): {fmt_spread(r['plain'], ' s', 3)}")
    resnet18_case(goals, repeats)


def resnet18_case(goals: Goals, repeats: int) -> None:
    """The project's ResNet-18-shaped CNN (bench/bench_capture.py's, 8×3×64²), ``| histogram(bins=64)``:
    quiet, then with a busy-loop process beside it."""
    from nnspec.capture import run as capture
    from nnspec.compiler.compile import compile_plan
    from nnspec.inputs.batch import Batch
    from nnspec.models import ResNet
    from nnspec.spec.load import load_spec

    torch.manual_seed(0)
    model = ResNet(widths=(64, 128, 256, 512), blocks=2, classes=1000).eval()
    x = torch.randn(8, 3, 64, 64)
    plan = compile_plan(load_spec({"nnspec": 1, "views": [{"query": QUERIES["histogram"]}]}), model)

    def plain():
        with torch.no_grad():
            model(x)

    fns = {"plain": plain, "histogram": lambda: capture.run(plan, model, Batch.of(x))}
    quiet = interleaved_ratios(fns, "plain", repeats=repeats)["histogram"]
    with busy_beside():
        loaded = interleaved_ratios(fns, "plain", repeats=repeats)["histogram"]
    goals.add("project's ResNet-18-shaped bench (8×3×64²), histograms, quiet", "≤ 1.25×", quiet, 1.25)
    goals.add(
        "same, one busy-loop process beside it: loaded ratio ÷ quiet median",
        "≤ 1.2",
        tuple(v / quiet[0] for v in loaded),
        1.2,
        unit="",
    )


# -- the Recorder against TensorBoard -------------------------------------------------------------
def recorder_case(goals: Goals, repeats: int, quick: bool) -> None:
    threads = torch.get_num_threads()
    size = 64 if quick else 128
    for n in (1, 2):
        torch.set_num_threads(n)
        try:
            own, tb = recorder_times(repeats, size)
        finally:
            torch.set_num_threads(threads)
        label = f"{n} thread{'s' if n > 1 else ''}"
        goals.add(
            f"Recorder's own time ÷ plain training step, ResNet-50 4×3×{size}², {label}", "≤ 0.2", own, 0.2, unit=""
        )
        goals.add(
            f"TensorBoard `add_histogram(bins=64)` ÷ Recorder, same content, {label}", "≥ 5×", tb, 5, at_least=True
        )


def recorder_times(repeats: int, size: int) -> tuple[tuple, tuple]:
    """(Recorder's own seconds ÷ plain step, TensorBoard's own seconds ÷ Recorder's), per round."""
    from torch.utils.tensorboard import SummaryWriter

    from bench.bench_recorder import BINS, VIEWS
    from nnspec.runs.recorder import Recorder
    from nnspec.spec.load import load_spec

    model = resnet50()
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, RESNET50["classes"], (4,), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    tmp = tempfile.mkdtemp(prefix="nnspec-bench-")
    rec = Recorder(
        load_spec({"nnspec": 1, "views": [{"query": q} for q in VIEWS]}),
        model,
        run=os.path.join(tmp, "run"),
        record_every=1,
    )
    rec._disarm()  # armed only around the recorded steps
    tb = SummaryWriter(os.path.join(tmp, "tb"))
    own: dict[str, list[float]] = {"plain": [], "recorder": [], "tensorboard": []}
    steps = {"recorder": 0, "tensorboard": 0}

    def train_step(log=None, key=""):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        t1 = time.perf_counter()
        if log is not None:
            log(loss, steps[key])
            steps[key] += 1
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        own[key or "plain"].append(t2 - t1 if log else time.perf_counter() - t0)

    def record(loss, step):
        rec.step(step, loss=loss)

    def tensorboard(loss, step):
        for name, p in model.named_parameters():
            tb.add_histogram(f"parameters/{name}", p, step, bins=BINS)
            tb.add_histogram(f"gradients/{name}", p.grad, step, bins=BINS)
        tb.add_scalar("loss", float(loss.detach()), step)
        tb.flush()

    def recorded():
        rec._arm()  # the forward pass's hooks are part of the recorder's cost, but small here
        try:
            train_step(record, "recorder")
        finally:
            rec._disarm()

    for fn in (train_step, recorded, lambda: train_step(tensorboard, "tensorboard")):  # warm-up
        fn()
    for k in own:
        own[k].clear()
    for _ in range(repeats):
        train_step()
        recorded()
        train_step(tensorboard, "tensorboard")
    rec.close()
    tb.close()
    shutil.rmtree(tmp, ignore_errors=True)
    rec_ratio = spread([r / p for r, p in zip(own["recorder"], own["plain"])])
    tb_ratio = spread([t / r for t, r in zip(own["tensorboard"], own["recorder"])])
    return rec_ratio, tb_ratio


# -- rendering: N views, and the whole process against a floor ----------------------------------
def render_case(goals: Goals, repeats: int, quick: bool) -> None:
    import nnspec
    from bench.bench_render import _histogram_views
    from nnspec.output import write

    for n in (10,) if quick else (10, 50, 100):
        spec, model = _histogram_views(n)
        html = interleaved_ratios(
            {"html": lambda spec=spec, model=model: nnspec.render(spec, model=model).html()}, "html", repeats
        )
        per_view = tuple(v / n * 1e3 for v in html["html"])
        goals.add(
            f"HTML render per view, {n} weight-histogram views (no forward pass)", "≤ 5 ms", per_view, 5, unit=" ms"
        )
    dash = nnspec.render(spec, model=model)
    load = load_average()

    def export():
        with tempfile.TemporaryDirectory() as out:
            write.write_outputs(dash, out, ("png",))

    png = interleaved_ratios({"png": export}, "png", repeats)
    per_view = tuple(v / n * 1e3 for v in png["png"])
    goals.add(f"PNG export per view, {n} views (`nnspec render`'s path)", "≤ 20 ms", per_view, 20, unit=" ms")
    goals.notes.append(
        f"PNG export: 1-minute load {load:.1f} at its start on {os.cpu_count()} cores (this process draws beside a worker)"
    )


VIEWS_22 = (
    [{"title": "Architecture", "query": "graph"}, {"title": "Layer summary", "query": "summary"}]
    + [{"query": "weights of conv1 | histogram"}]
    + [{"query": f"weights of layer{s}.0.conv{c} | histogram"} for s in (1, 2, 3, 4) for c in (1, 2, 3)]
    + [{"query": "weights of fc | heatmap"}]
    + [{"query": f"activations of layer{s} | histogram"} for s in (1, 2, 3, 4)]
    + [{"query": "activations of type(Bottleneck) | stats | table"}]
    + [{"query": "grads of * | norm | bar(log=true)"}]
)
FLOOR = (
    "import torch; from tests.vision_models import ResNet50ish; torch.manual_seed(0); "
    "m = ResNet50ish(**{kw}); x = torch.randn({shape}); m(x).sum().backward()"
)


def dashboard_case(goals: Goals, repeats: int, quick: bool) -> None:
    size = 64 if quick else 224
    shape = [2, 3, size, size]
    assert len(VIEWS_22) == 22
    spec = {
        "nnspec": 1,
        "title": "ResNet-50-shaped network, 22 views",
        "model": {"factory": "tests.vision_models:ResNet50ish", "kwargs": RESNET50, "seed": 0},
        "input": {"random": {"shape": shape, "seed": 0}},
        "loss": "sum",
        "views": VIEWS_22,
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnet50.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        floor = [sys.executable, "-c", FLOOR.format(kw=RESNET50, shape=tuple(shape))]
        render = [sys.executable, "-m", "nnspec", "render", path, "-o", os.path.join(tmp, "out"), "-q"]
        png = render + ["-F", "html,png"]
        cmds = {"floor": (floor, env), "html": (render, env), "html+png": (png, env)}
        if os.path.exists(SYSTEM_FONTCONFIG):  # the fonts as vl-convert loads them by itself: before issue 15
            cmds["html+png, vl-convert's fonts"] = (png, dict(env, FONTCONFIG_FILE=SYSTEM_FONTCONFIG))
        fns = {
            k: (lambda c=c, e=e: subprocess.run(c, check=True, env=e, cwd=ROOT, capture_output=True))
            for k, (c, e) in cmds.items()
        }
        r = interleaved_ratios(fns, "floor", repeats)
    goals.add(f"22-view ResNet-50 dashboard (2×3×{size}²), `nnspec render` ÷ floor, HTML", "≤ 1.15×", r["html"], 1.15)
    goals.add("same, HTML+PNG", "≤ 1.8×", r["html+png"], 1.8)
    if "html+png, vl-convert's fonts" in r:
        goals.add(
            "same, HTML+PNG, fonts as vl-convert loads them (before)", "–", r["html+png, vl-convert's fonts"], None
        )
    goals.notes.append(
        f"floor script (import torch, build, forward+backward at 2×3×{size}²): {fmt_spread(r['floor'], ' s')}"
    )


RUN = {
    "gpt2": gpt2_case,
    "resnet": resnet_case,
    "recorder": recorder_case,
    "render": render_case,
    "dashboard": dashboard_case,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small inputs, one repeat: does it run")
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated: " + ",".join(CASES))
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    goals = Goals()
    start = load_average()
    t0 = time.perf_counter()
    for case in args.only.split(","):
        RUN[case](goals, repeats, args.quick)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; {repeats} rounds")
    print(
        f"1-minute load {start:.1f} at the start, {load_average():.1f} at the end; {time.perf_counter() - t0:.0f} s\n"
    )
    goals.print()


if __name__ == "__main__":
    main()
