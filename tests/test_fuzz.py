"""Query fuzz: mutated queries rendered against small models never give an
internal error, every error is located, and no render hangs.

Seeds are every query of ``specs/*.yaml``, ``tests/cases/*/spec.yaml`` and the
gallery (``docs/gallery.py`` ENTRIES). A seeded mutator swaps, inserts and
deletes tokens; appends transforms and marks with random arguments from the
catalog; puts in extreme numbers, index steps ``[::0]``/``[::-1]``, huge and
negative indices, unicode, unknown schemes, long selectors and backtracking
regexes (``/blocks.(a+)+$/`` against a module name of thousands of characters).

Each case is rendered through ``nnspec.render`` under ``signal.alarm``. The
suite runs a bounded sample (about half a minute); ``bench/fuzz_queries.py``
runs the long campaign (10,000+ queries, each in a watched child process).
"""

from __future__ import annotations

import ast
import glob
import os
import random
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import torch
import yaml
from torch import nn

from nnspec.query.catalog import ENCODINGS, FUNCTIONS, MARKS, SOURCE_KINDS, TRANSFORMS
from tests.fixtures.models import NaNModel, Stack, TinyCNN, TinyMLP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCATED = re.compile(r"^\S[^\n]*?:\d+:\d+: ")  # file:line:col: or <query>:line:col:
INTERNAL = "internal error"
CASE_SECONDS = 20  # one render; a backtracking regex used to hang for ever

# -- models -------------------------------------------------------------------------------
LONG = "blocks_" + "a" * 4000 + "b"  # a very long module name that /blocks.(a+)+$/ backtracks on


class LongName(nn.Module):
    """One leaf with a module name of 4,000+ characters, and a short one beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module(LONG, nn.Linear(4, 4))
        self.short = nn.Linear(4, 2)

    def forward(self, x):
        return self.short(getattr(self, LONG)(x))


def _seeded(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return make()

    return build


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    "mlp": (_seeded(TinyMLP), lambda: torch.randn(8, 4, generator=torch.Generator().manual_seed(1))),
    "cnn": (_seeded(TinyCNN), lambda: torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(1))),
    "stack": (_seeded(Stack), lambda: torch.randint(0, 10, (2, 5), generator=torch.Generator().manual_seed(1))),
    "nan": (_seeded(NaNModel), lambda: torch.randn(4, 3, generator=torch.Generator().manual_seed(1))),
    "long": (_seeded(LongName), lambda: torch.randn(3, 4, generator=torch.Generator().manual_seed(1))),
}

# -- seed queries -------------------------------------------------------------------------


def _spec_queries(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return []
    out: list[str] = []
    if isinstance(doc, dict):
        for key in ("views", "expect"):
            for v in doc.get(key) or []:
                if isinstance(v, dict) and isinstance(v.get("query"), str):
                    out.append(v["query"])
    return out


def _gallery_queries() -> list[str]:
    path = os.path.join(ROOT, "docs", "gallery.py")
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except OSError:
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ENTRIES" for t in node.targets):
            return [e[2] for e in ast.literal_eval(node.value)]
    return []


def seed_queries() -> list[str]:
    files = sorted(glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
    files += sorted(glob.glob(os.path.join(ROOT, "tests", "cases", "*", "spec.yaml")))
    queries = [q for f in files for q in _spec_queries(f)] + _gallery_queries()
    # the expect: checks' comparison belongs to checks; a view query ends before it
    return list(dict.fromkeys(q.strip() for q in queries if q.strip()))


# -- the mutator --------------------------------------------------------------------------
INTS = [0, 1, 2, 3, -1, -2, 7, 16, 255, 10_000, 10**6, 2**31, 2**63, -(2**63), 10**30, -(10**30)]
FLOATS = [0.5, -0.5, 1e-308, 1e308, -1e308, 1e400, 3.0, 0.0]
WORDS = ["true", "false", "LR", "TB", "heads", "overview", "mean", "absmax", "rms", "std", "nosuch", "layer", "value"]
STRINGS = ['"x y"', "''", '"grads of *.weight | norm"', '"weights of nosuch | mean"', "'é☃'", '"' + "z" * 300 + '"']
SCHEMES = ["nosuch", "redblue", "viridis", "category10", "tableau10", "Viridis", "greys", "blueorange", "rainbow"]
INDEXES = [
    "[::0]",
    "[::-1]",
    "[::2]",
    "[0]",
    "[-1]",
    "[10**30]",
    "[100000000000000000000000000000]",
    "[-100000000000000000000000000000]",
    "[9223372036854775807]",
    "[9223372036854775808]",
    "[0, :16]",
    "[:, :, 0]",
    "[0, 0, 0, 0, 0, 0, 0]",
    "[5:2]",
    "[-5:]",
    "[:-100]",
    "[1:2:3]",
    "[0:0]",
    "[2, -3]",
    "[:0]",
    "[3]",
    "[0,]",
    "[]",
]
SELECTORS = [
    "*",
    "fc1",
    "*.weight",
    "/blocks.(a+)+$/",
    "/(a|aa)+$/",
    "/(.*a){25}/",
    "/[/",
    "/.*/",
    "/" + "a" * 2000 + "/",
    "type(Linear)",
    "type(Nosuch)",
    "type(Conv2d), type(ReLU)",
    "* except *",
    ", ".join(["fc1"] * 300),
    "x" * 5000,
    "é☃.weight",
    "blocks.*",
    "*" * 200,
    "?" * 50,
    LONG,
    LONG[:100] + "*",
    "head, embed",
]
UNICODE = ["é", "☃", "\u200b", "\u2028", "😀", "\x00", "\t", "\n", "ﬁ", "Ｗ"]
TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|/(?:\\/|[^/])+/|[A-Za-z_][A-Za-z0-9_.*?]*|[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?|\S")


def _value(rng: random.Random, arg_name: str) -> str:
    pick = rng.random()
    if arg_name == "scheme" and pick < 0.6:
        return rng.choice(SCHEMES)
    if pick < 0.35:
        return str(rng.choice(INTS))
    if pick < 0.5:
        return repr(rng.choice(FLOATS)).replace("inf", "1e400")
    if pick < 0.7:
        return rng.choice(WORDS)
    if pick < 0.8:
        return rng.choice(STRINGS)
    n = rng.choice([0, 1, 2, 2, 3])
    return "[" + ", ".join(str(rng.choice(INTS + FLOATS)) for _ in range(n)) + "]"


def _call(rng: random.Random, args: list[str]) -> str:
    if not args or rng.random() < 0.25:
        return "" if rng.random() < 0.7 else "()"
    chosen = rng.sample(args, k=rng.randint(1, min(3, len(args))))
    parts = []
    for name in chosen:
        v = _value(rng, name)
        parts.append(v if rng.random() < 0.15 else f"{name}={v}")
    if rng.random() < 0.1:
        parts.append(f"nosuch={_value(rng, 'x')}")
    return "(" + ", ".join(parts) + ")"


def _transform(rng: random.Random) -> str:
    t = TRANSFORMS[rng.choice(list(TRANSFORMS))]
    return t.name + _call(rng, [a.name for a in t.args])


def _mark(rng: random.Random) -> str:
    m = MARKS[rng.choice(list(MARKS))]
    return m.name + _call(rng, [e.name for e in ENCODINGS] if m.encodings else [])


def _split(query: str) -> tuple[str, list[str]]:
    head, *steps = [p.strip() for p in query.split("|")]
    return head, steps


def mutate(query: str, rng: random.Random) -> str:
    """One to three random edits of ``query``."""
    for _ in range(rng.randint(1, 3)):
        query = rng.choice(MUTATIONS)(query, rng)
    return query[:20_000]


def _tokens(query: str, rng: random.Random) -> str:
    toks = TOKEN.findall(query)
    if not toks:
        return query
    op = rng.randrange(3)
    i = rng.randrange(len(toks))
    if op == 0 and len(toks) > 1:
        j = rng.randrange(len(toks))
        toks[i], toks[j] = toks[j], toks[i]
    elif op == 1:
        pool = TOKEN.findall(" ".join(rng.sample(SEEDS, k=min(3, len(SEEDS))))) or ["|"]
        toks.insert(i, rng.choice(pool + ["|", "[", "]", "(", ")", ",", ":", "=", "@", "of", "except", "over"]))
    else:
        del toks[i]
    return " ".join(toks)


def _add_transform(query: str, rng: random.Random) -> str:
    head, steps = _split(query)
    steps.insert(rng.randint(0, len(steps)), _transform(rng))
    return " | ".join([head, *steps])


def _set_mark(query: str, rng: random.Random) -> str:
    head, steps = _split(query)
    if steps and steps[-1].split("(")[0] in MARKS and rng.random() < 0.7:
        steps[-1] = _mark(rng)
    else:
        steps.append(_mark(rng))
    return " | ".join([head, *steps])


def _numbers(query: str, rng: random.Random) -> str:
    nums = list(re.finditer(r"-?\d+(?:\.\d+)?", query))
    if not nums:
        return query + " | histogram(bins=" + str(rng.choice(INTS)) + ")"
    m = rng.choice(nums)
    return query[: m.start()] + str(rng.choice(INTS + FLOATS)) + query[m.end() :]


def _index(query: str, rng: random.Random) -> str:
    head, steps = _split(query)
    head = re.sub(r"\s*\[[^\]]*\]\s*$", "", head)
    m = re.match(r"^(\w+ of [^@\[]+?)(\s*@\S+)?$", head)
    if m or head.startswith("input_grads"):
        head = head + " " + rng.choice(INDEXES).replace("10**30", str(10**30))
    return " | ".join([head, *steps])


def _selector(query: str, rng: random.Random) -> str:
    head, steps = _split(query)
    kind = rng.choice([k for k in SOURCE_KINDS if k not in ("graph", "summary", "function", "loss", "input_grads")])
    m = re.match(r"^(\w+) of (.+?)(\s*(?:@\S+|\[[^\]]*\]|over steps.*))?$", head)
    rest = (m.group(3) or "") if m else ""
    head = f"{kind if rng.random() < 0.3 or not m else m.group(1)} of {rng.choice(SELECTORS)}{rest}"
    return " | ".join([head, *steps])


def _unicode(query: str, rng: random.Random) -> str:
    i = rng.randint(0, len(query))
    return query[:i] + rng.choice(UNICODE) * rng.choice([1, 1, 3, 100]) + query[i:]


def _structure(query: str, rng: random.Random) -> str:
    return rng.choice(
        [
            f"graph(depth={rng.choice(INTS)}, color={rng.choice(STRINGS + WORDS)})",
            f"function {', '.join(rng.sample(list(FUNCTIONS), 2))} over [{rng.choice(INTS)}, {rng.choice(INTS)}]",
            "summary | " + _mark(rng),
            "input_grads " + rng.choice(INDEXES) + " | " + _transform(rng),
            f"{query} | {_transform(rng)} | {_transform(rng)}",
        ]
    )


MUTATIONS: list[Callable[[str, random.Random], str]] = [
    _tokens,
    _tokens,
    _add_transform,
    _add_transform,
    _set_mark,
    _set_mark,
    _numbers,
    _index,
    _index,
    _selector,
    _selector,
    _unicode,
    _structure,
]
SEEDS = seed_queries()


def cases(n: int, seed: int) -> Iterator[tuple[str, str]]:
    """``n`` (model name, query) pairs, the same for the same seed."""
    rng = random.Random(seed)
    names = list(MODELS)
    for _ in range(n):
        q = rng.choice(SEEDS)
        yield rng.choice(names), (q if rng.random() < 0.05 else mutate(q, rng))


# -- one render ---------------------------------------------------------------------------
@dataclass
class Outcome:
    counts: dict[str, int] = field(default_factory=dict)  # ok, error, internal, unlocated, raised, hang
    bad: list[tuple[str, str, str, str]] = field(default_factory=list)  # (what, model, query, message)

    def add(self, what: str, model: str = "", query: str = "", message: str = "") -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        if what not in ("ok", "error"):
            self.bad.append((what, model, query, message))


def spec_for(query: str) -> dict:
    return {"nnspec": 1, "title": "fuzz", "loss": "sum", "views": [{"title": "v", "query": query}]}


def judge(model_name: str, query: str) -> tuple[str, str]:
    """Render one query: ("ok" | "error" | "internal" | "unlocated" | "raised", message)."""
    import nnspec
    from nnspec.errors import NnspecError

    make, inputs = MODELS[model_name]
    try:
        dash = nnspec.render(spec_for(query), model=_model(model_name, make), inputs=inputs())
    except NnspecError as e:
        text = str(e)
        return ("unlocated", text) if e.span is None and not LOCATED.match(text) else ("error", text)
    except Exception as e:
        return "raised", f"{type(e).__name__}: {e}"
    err = dash.views[0].error
    if err is None:
        return "ok", ""
    if INTERNAL in err:
        return "internal", err
    if not LOCATED.match(err):
        return "unlocated", err
    return "error", err


_BUILT: dict[str, nn.Module] = {}


def _model(name: str, make: Callable[[], nn.Module]) -> nn.Module:
    if name not in _BUILT:
        _BUILT[name] = make()
    return _BUILT[name]


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def run_cases(pairs, limit: int = CASE_SECONDS, budget: float | None = None) -> Outcome:
    """Judge each (model, query) under a per-case alarm; stop early past ``budget`` seconds."""
    out = Outcome()
    old = signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    try:
        for model_name, query in pairs:
            if budget is not None and time.monotonic() - start > budget:
                break
            signal.alarm(limit)
            try:
                what, message = judge(model_name, query)
            except _Hang:
                what, message = "hang", f"over {limit} s"
            finally:
                signal.alarm(0)
            out.add(what, model_name, query, message[:2000])
    finally:
        signal.signal(signal.SIGALRM, old)
    return out


# -- the tests ----------------------------------------------------------------------------
FIXED = [
    ("mlp", "activations of fc1 [::0]"),
    ("mlp", "activations of fc1 [::-1]"),
    ("mlp", "weights of fc1 [::-1]"),
    ("mlp", f"weights of fc1 [{10**30}]"),
    ("mlp", f"activations of fc1 [{-(10**30)}]"),
    ("mlp", "weights of fc1 [9223372036854775808]"),
    ("mlp", "weights of fc1 [7]"),
    ("mlp", "activations of fc1 [0, 0, 0, 0]"),
    ("mlp", "input_grads [::-1]"),
    ("mlp", "weights of fc1 | heatmap(scheme=nosuch)"),
    ("cnn", "weights of conv1 | flatten | heatmap(scheme=nosuch)"),
    ("mlp", "weights of fc1 | bar(scheme=nosuch)"),
    ("mlp", "weights of fc1 | sample(n=100000000000000000000)"),
    ("mlp", "weights of fc1 | histogram(bins=3, range=[-1e400, 1e400])"),
    ("long", "activations of /blocks.(a+)+$/"),
    ("long", "weights of /blocks.(a+)+$/"),
    ("long", "activations of /(.*a){25}/"),
    ("long", "weights of * | heatmap"),
    ("long", f"activations of {LONG} | histogram"),
    ("long", "function relu, sigmoid over [-2, 2] | scatter"),
    ("stack", 'graph(depth=3, color="grads of *.weight | norm") | mean'),
    ("stack", 'graph(depth=3, color="grads of *.weight | norm") | scatter'),
    ("stack", "graph(depth=2, color=std)"),
    ("cnn", "input_grads [5:2] | dead_fraction"),
    ("mlp", "weights of fc1 [:0]"),
]


@pytest.mark.parametrize(("model_name", "query"), FIXED, ids=[q[:40] for _, q in FIXED])
def test_known_hostile_queries(model_name, query):
    out = run_cases([(model_name, query)])
    assert not out.bad, out.bad


def test_seed_queries_exist():
    assert len(SEEDS) >= 40


def test_fuzz_queries():
    """A bounded sample of mutated queries: about 30 s on a laptop CPU."""
    out = run_cases(cases(4000, seed=12), budget=30.0)
    total = sum(out.counts.values())
    print(f"fuzz: {total} queries, {out.counts}")
    assert total >= 200, out.counts
    shown = "\n".join(f"{w} [{m}] {q!r}: {msg[:300]}" for w, m, q, msg in out.bad[:10])
    assert not out.bad, f"{out.counts}\n{shown}"


# -- the bounds behind the fuzz -----------------------------------------------------------
def test_backtracking_regex_is_a_located_error_in_bounded_time():
    from nnspec.compiler import messages
    from nnspec.compiler.selectors import REGEX_SECONDS

    start = time.monotonic()
    what, message = judge("long", "activations of /blocks.(a+)+$/")  # hung Python's re for ever
    assert what == "error" and message.startswith("<query>:1:16: error: no module matches"), message
    what, message = judge("long", "weights of short, /(.*a){25}/")  # backtracks in the regex engine too
    assert what == "error" and message.startswith("<query>:1:19: error: "), message
    assert messages.regex_timeout("(.*a){25}", REGEX_SECONDS) in message
    assert time.monotonic() - start < 10 * REGEX_SECONDS + 5


def test_index_problems_are_index_errors():
    """Found at run time (the shape is known only then): located at the index, not 'forward pass failed'."""
    for query in ("activations of fc1 [9]", "activations of fc1 [:, 5:2]", "activations of fc1 [0, 0, 0]"):
        what, message = judge("mlp", query)
        assert what == "error", message
        assert message.startswith("<query>:1:20: error: index "), message
        assert "forward pass" not in message


def test_unknown_scheme_lists_the_schemes():
    from nnspec.marks import messages
    from nnspec.marks.common import vega_schemes

    for query in ("weights of fc1 | heatmap(scheme=nosuch)", "weights of fc1 | bar(scheme=Viridis)"):
        what, message = judge("mlp", query)
        assert what == "error" and "no colour scheme" in message and "redblue" in message, message
    assert "viridis" in vega_schemes() and "nosuch" not in vega_schemes()
    assert "viridis" in messages.unknown_scheme("heatmap", "x", ["viridis"])


def test_box_quantiles_exact_past_the_sort_limit(monkeypatch):
    """Past SORTED_MAX the box's five numbers come from chunked selection: still numpy's."""
    import numpy as np

    from nnspec.execute.data import Data
    from nnspec.marks import tables

    monkeypatch.setattr(tables, "SORTED_MAX", 100)
    monkeypatch.setattr(tables, "_CHUNK", 1000)
    monkeypatch.setattr(tables, "_BINS", 16)
    rng = np.random.default_rng(0)
    arrays = {
        "normal": rng.normal(size=10_007).astype(np.float32),
        "ties": np.concatenate([np.zeros(5000), np.ones(3000), [np.nan, np.inf, -np.inf]]).astype(np.float32),
        "constant": np.full(5000, 2.5, dtype=np.float32),
        "wide": np.exp(rng.normal(size=20_000) * 20),
    }
    frame = tables.box_frame(Data("tensors", tensors={k: torch.from_numpy(v) for k, v in arrays.items()}))
    for row in frame.itertuples():
        a = arrays[row.layer]
        finite = a[np.isfinite(a)].astype(np.float64)
        want = np.quantile(finite, [0, 0.25, 0.5, 0.75, 1])
        assert [row.min, row.q1, row.median, row.q3, row.max] == want.tolist(), row.layer
        assert row.nonfinite == a.size - finite.size


def test_sample_indexes_bounded_and_uniform(monkeypatch):
    from nnspec.execute import transforms

    g = torch.Generator().manual_seed(0)
    idx = transforms.sample_indexes(400_000_000, 100_000, g)  # no 3.2 GB permutation
    assert idx.numel() == idx.unique().numel() == 100_000 and bool((idx[1:] > idx[:-1]).all())
    assert int(idx.max()) < 400_000_000
    monkeypatch.setattr(transforms, "PERMUTE_MAX", 10)
    counts = torch.zeros(100)
    for seed in range(300):
        counts[transforms.sample_indexes(100, 10, torch.Generator().manual_seed(seed))] += 1
    assert float(counts.min()) > 10 and float(counts.max()) < 60  # about 30 each


def test_sizes_are_clamped():
    from nnspec.marks.common import MAX_SIZE, clamp

    assert clamp(100_000) == MAX_SIZE and clamp(0.2) == 1 and clamp(359.6) == 360
    spec = spec_for("weights of * | stats | table")  # a layer name of 4,000 characters: a wide table
    import nnspec

    dash = nnspec.render(spec, model=_model("long", MODELS["long"][0]), inputs=MODELS["long"][1]())
    assert dash.views[0].error is None
    vl = dash.views[0].vega_lite()
    assert vl["width"] <= MAX_SIZE and vl["height"] <= MAX_SIZE


def test_png_over_the_pixel_cap_is_refused():
    from nnspec.output import convert

    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": [{"x": 1}]},
        "mark": "point",
        "encoding": {"x": {"field": "x", "type": "quantitative"}},
        "width": 3000,
        "height": 3000,
    }
    with pytest.raises(convert.ImageTooLarge) as e:
        convert.check_png_size(spec, limit=10_000_000)
    assert "Mpx" in e.value.message
    convert.check_png_size(spec, limit=100_000_000)
