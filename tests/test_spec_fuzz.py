"""A seeded fuzzer for the spec layer: mutated specs and values files through
``nnspec.load_spec`` and ``nnspec validate`` / ``nnspec resolve``.

Every failure must be an ``NnspecError`` located in a file (span with file and
line); every CLI call exits 0 or 1, never with a traceback or an "internal
error"; every case ends within a few seconds. The rendering side (models,
queries, marks) has its own fuzz (tests/test_fuzz.py): this one stays in spec/.

The test runs a few hundred cases from a fixed seed. A longer campaign::

    python -m tests.test_spec_fuzz 10000 [seed]

prints the counts by outcome (ok, located error, unlocated error, internal
error by type, CLI failures, timeouts).
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter

import yaml

import nnspec
from nnspec.errors import NnspecError
from nnspec.spec.load import load_spec
from tests.conftest import ROOT

CASE_SECONDS = 10  # a case that runs longer is a hang


def corpus() -> list[tuple[str, str]]:
    """(name, text) of every spec in specs/ and tests/cases/*/spec.yaml."""
    paths = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.yaml"), recursive=True))
    paths += sorted(glob.glob(os.path.join(ROOT, "tests", "cases", "*", "spec.yaml")))
    out = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            out.append((os.path.relpath(p, ROOT), f.read()))
    return out


# -- values a mutation puts in ------------------------------------------------------
def _numbers(r: random.Random) -> object:
    return r.choice(
        [0, -1, 1, 5.0, 2.5, -0.0, 2**31, 2**63, 2**64 + 1, -(2**63) - 1, 10**40, 1e308, -1e308,
         float("inf"), float("-inf"), float("nan"), 1e-320, True, False, 100_000, 4001, 10**6]
    )  # fmt: skip


_STRINGS = [
    "", " ", "x", "fc1", "weights of fc1 | heatmap", "${x}", "${x:-[1, 2}", "${x:-{a: 1}}", "${nosuch}",
    "$$", "${", "$", "${a.b.c}", "ü\u202eÿ😀", "\u2028\u2029", "\x00", "a\x00b", "\x07\x1b[31m", "\ud7ff",
    "../../../../etc/passwd", "/etc/passwd", "/dev/zero", "/", ".", "~", "x" * 5000, "nosuch.yaml",
    "tests.fixtures.models:make_tiny_mlp", "os:getcwd", "a:b", ":", "cars", "nosuch.csv", "nosuch.npy",
    "<!--<script>", "'", '"', "\\", "{", "[", "*", "&", "!", "%", "@", "`", "#", "---", "...", "?",
    "type(Linear)", "[1, 2]", "{a: 1}", "true", "null", "0x10", "1e5", "0o17", ".inf", "2024-01-01",
]  # fmt: skip

_KEYS = [
    "nnspec", "title", "description", "model", "loss", "input", "views", "train", "vars", "extends",
    "expect", "query", "id", "width", "height", "max_marks", "columns", "repeat", "factory", "file",
    "checkpoint", "seed", "steps", "batch", "record_every", "optimizer", "run", "random", "shape",
    "dataset", "features", "target", "tokens", "args", "kwargs", "x-anchor", "x-group", "unknown", "",
    "<<", "1", "ü", "a b", "${x}",
]  # fmt: skip


def _value(r: random.Random, depth: int = 0) -> object:
    k = r.random()
    if k < 0.35:
        return _numbers(r)
    if k < 0.7 or depth > 2:
        return r.choice(_STRINGS)
    if k < 0.8:
        return None
    if k < 0.9:
        return [_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {r.choice(_KEYS): _value(r, depth + 1) for _ in range(r.randint(0, 3))}


def _raw(r: random.Random) -> str:
    """YAML text no dumper writes: deep nesting, anchors and aliases, tags, billions of laughs."""
    n = r.choice([5, 50, 99, 101, 300, 500, 1000, 3000])
    k = r.randint(0, 11)
    if k == 0:
        return "[" * n + "1" + "]" * n
    if k == 1:
        return "{a: " * n + "1" + "}" * n
    if k == 2:
        return "&r [*r]"
    if k == 3:
        return "&r {a: *r}"
    if k == 4:
        return "!!int abc"
    if k == 5:
        return r.choice(
            ["!!python/object/apply:os.getcwd []", "!!python/name:os.system", "!custom 1", "!!binary aGk=",
             "!!set {a, b}", "!!omap [a: 1]", "!!timestamp 2024-01-01", "!!float x", "!!bool maybe",
             "!!null x", "!<tag:yaml.org,2002:str> 5", "!!str 5", "!!map [1]", "!!seq {a: 1}"]
        )  # fmt: skip
    if k == 6:
        return "&a [1, 2]"  # an anchor (an alias of it may follow elsewhere)
    if k == 7:
        return "*a"  # an alias (maybe undefined)
    if k == 8:
        return "{<<: *a, b: 1}"
    if k == 9:
        return "{<<: [1, 2]}"
    if k == 10:
        return "? [1, 2]\n  : 3" if r.random() < 0.5 else "{[1, 2]: 3, {a: 1}: 4}"
    return "{" + ", ".join(f"k{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}]" for i in range(1, 4)) + "}"


BILLION_LAUGHS = (
    "nnspec: 1\n"
    'x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"x-{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    + "views: [{query: summary}]\n"
)


# -- tree-level mutations -------------------------------------------------------------
def _containers(data: object, path: tuple = ()) -> list[tuple[tuple, object]]:
    out: list[tuple[tuple, object]] = []
    if isinstance(data, dict | list):
        out.append((path, data))
        items = data.items() if isinstance(data, dict) else enumerate(data)
        for k, v in items:
            out += _containers(v, path + (k,))
    return out


def mutate_tree(r: random.Random, data: object) -> tuple[object, dict[str, str]]:
    """``data`` with a few random mutations; raw YAML texts (by placeholder) to splice in after dumping."""
    raws: dict[str, str] = {}

    def raw() -> str:
        key = f"RAW{len(raws)}PLACEHOLDER"
        raws[key] = _raw(r)
        return key

    for _ in range(r.randint(1, 3)):
        places = _containers(data)
        if not places:
            return _value(r), raws
        _, box = r.choice(places)
        k = r.random()
        if isinstance(box, dict):
            keys = list(box)
            if k < 0.25 and keys:
                del box[r.choice(keys)]
            elif k < 0.6 and keys:
                box[r.choice(keys)] = _value(r)
            elif k < 0.8:
                box[r.choice(_KEYS)] = raw() if r.random() < 0.5 else _value(r)
            elif keys:
                box[r.choice(keys)] = raw()
        elif isinstance(box, list):
            if k < 0.2 and box:
                del box[r.randrange(len(box))]
            elif k < 0.5 and box:
                box[r.randrange(len(box))] = _value(r)
            elif k < 0.7 and box:
                box[r.randrange(len(box))] = raw()
            elif k < 0.8 and box:
                box.extend(box * r.choice([1, 10, 200]))  # views ×200
            else:
                box.append(_value(r))
    return data, raws


def dump(data: object, raws: dict[str, str]) -> str:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**6)
    for key, raw in raws.items():
        text = text.replace(key, raw.replace("\n", " ") if "\n" in raw else raw)
    return text


# -- text-level mutations -------------------------------------------------------------
_JUNK = [b"\x00", b"\xff", b"\xfe\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\x07", b"\x1b", b"\x0c", b"\x85",
         "\u2028".encode(), "\ufeff".encode(), b"\t", b"\r", b"\r\n", b":", b"- ", b"{", b"]", b"&", b"*x",
         b"!!", b"%YAML 1.1\n---\n", b"---\n", b"...\n", b"\n  ", b"'", b'"', b"#", b"|", b">", b"?"]  # fmt: skip


def mutate_text(r: random.Random, data: bytes) -> bytes:
    k = r.random()
    if k < 0.15:
        return data[: r.randint(0, len(data))]
    if k < 0.25:
        return data.decode("utf-8", "replace").encode(r.choice(["utf-16", "latin-1", "utf-32"]), "replace")
    if k < 0.35:
        lines = data.split(b"\n")
        i = r.randrange(len(lines))
        lines[i] = (b" " * r.randint(0, 5)) + lines[i].lstrip() if r.random() < 0.5 else lines[i][::-1]
        return b"\n".join(lines)
    if k < 0.45:
        i = r.randint(0, len(data))
        return data[:i] + bytes(r.randrange(256) for _ in range(r.randint(1, 8))) + data[i:]
    out = data
    for _ in range(r.randint(1, 4)):
        i = r.randint(0, len(out))
        out = out[:i] + r.choice(_JUNK) + out[i:]
    return out


# -- one case ----------------------------------------------------------------------
def make_case(r: random.Random, specs: list[tuple[str, str]]) -> tuple[bytes, bytes | None, str]:
    """(spec bytes, values-file bytes or None, kind of mutation)."""
    name, text = r.choice(specs)
    k = r.random()
    values = None
    if k < 0.05:
        return BILLION_LAUGHS.encode(), None, "laughs"
    if k < 0.55 and name not in _UNPARSED:
        data, raws = mutate_tree(r, yaml.safe_load(text))
        out, kind = dump(data, raws).encode("utf-8", "surrogatepass"), "tree"
    elif k < 0.9:
        out, kind = mutate_text(r, text.encode()), "text"
    else:
        data, raws = mutate_tree(r, {"layer": "fc1", "bins": 7})
        values = mutate_text(r, dump(data, raws).encode("utf-8", "surrogatepass")) if r.random() < 0.3 else None
        values = values if values is not None else dump(data, raws).encode("utf-8", "surrogatepass")
        out, kind = text.encode(), "values"
    if r.random() < 0.1:
        out = mutate_text(r, out)
    return out, values, kind


_UNPARSED = {"tests/cases/invalid-yaml/spec.yaml"}  # not YAML to begin with: text mutations only


class _Timeout(BaseException):
    pass


@contextlib.contextmanager
def _deadline(seconds: int):
    def fire(*_):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _tiny_model(spec):  # `resolve` of a repeat over a selector builds the model: a fixed tiny one
    from tests.fixtures.models import make_tiny_mlp

    return make_tiny_mlp()


def run_case(folder: str, spec: bytes, values: bytes | None) -> list[str]:
    """The outcomes of one case: 'ok', 'located', or a problem's description."""
    from nnspec.cli.main import main

    path = os.path.join(folder, "spec.yaml")
    with open(path, "wb") as f:
        f.write(spec)
    files: tuple[str, ...] = ()
    if values is not None:
        files = (os.path.join(folder, "values.yaml"),)
        with open(files[0], "wb") as f:
            f.write(values)
    outcomes = []
    try:
        with _deadline(CASE_SECONDS):
            if files:
                load_spec(path, values_files=files)
            else:
                nnspec.load_spec(path)
        outcomes.append("ok")
    except NnspecError as e:
        located = e.span is not None and bool(e.span.file) and e.span.line >= 1
        outcomes.append("located" if located else f"unlocated: {e.message[:80]}")
    except _Timeout:
        outcomes.append("timeout: load_spec")
    except RecursionError:
        outcomes.append("internal: RecursionError")
    except Exception as e:  # what this test is for
        outcomes.append(f"internal: {type(e).__name__}")
    for argv in (["validate", path], ["resolve", path, *(a for f in files for a in ("-f", f))]):
        err = io.StringIO()
        try:
            with _deadline(CASE_SECONDS), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main(argv)
        except _Timeout:
            outcomes.append(f"timeout: {argv[0]}")
            continue
        except BaseException as e:  # SystemExit (argparse) or an escaped exception
            outcomes.append(f"cli {argv[0]} raised {type(e).__name__}")
            continue
        text = err.getvalue()
        if code not in (0, 1) or "internal error" in text or "Traceback" in text:
            outcomes.append(f"cli {argv[0]} exit {code}: {text.splitlines()[0][:80] if text else ''}")
    return outcomes


def campaign(n: int, seed: int = 12, log=None) -> Counter:
    r = random.Random(seed)
    specs = corpus()
    counts: Counter = Counter()
    import nnspec.inputs.model as model_module

    build = model_module.build_model
    model_module.build_model = _tiny_model
    folder = tempfile.mkdtemp(prefix="nnspec-fuzz-")
    try:
        shutil.copy(os.path.join(ROOT, "specs", "team", "base.yaml"), os.path.join(folder, "base.yaml"))
        for i in range(n):
            spec, values, kind = make_case(r, specs)
            outcomes = run_case(folder, spec, values)
            counts["cases"] += 1
            for o in outcomes:
                counts[o if o in ("ok", "located") else f"{kind}: {o}"] += 1
            bad = [o for o in outcomes if o not in ("ok", "located")]
            if bad:
                counts["cases with a problem"] += 1
                if log is not None:
                    log(i, kind, bad, spec[:300])
    finally:
        model_module.build_model = build
        shutil.rmtree(folder, ignore_errors=True)
    return counts


def test_spec_fuzz():
    """A few hundred mutated specs: no internal error, every error located, nothing hangs."""
    problems: list[str] = []
    start = time.perf_counter()
    counts = campaign(300, seed=2024, log=lambda i, kind, bad, head: problems.append(f"#{i} {kind}: {bad} {head!r}"))
    assert counts["cases"] == 300
    assert counts["ok"] + counts["located"] > 0
    assert not problems, f"{len(problems)} of 300 cases failed badly:\n" + "\n".join(problems[:10])
    assert time.perf_counter() - start < 120


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    os.chdir(ROOT)
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))  # a runaway case fails, not the machine
    examples: dict[str, str] = {}

    def log(i, kind, bad, head):
        for b in bad:
            examples.setdefault(f"{kind}: {b}", f"#{i} {head!r}")

    t = time.perf_counter()
    result = campaign(n, seed, log)
    for key, count in sorted(result.items(), key=lambda kv: -kv[1]):
        print(f"{count:7d}  {key}")
    print(f"{time.perf_counter() - t:.0f} s")
    for key, head in sorted(examples.items()):
        print(f"  {key}\n      {head[:240]}")
