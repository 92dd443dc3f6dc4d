"""Stage 1: load a spec file into frozen dataclasses that know their spans.

    text ──yamlpos.load──▶ data + spans ──schema (draft-07)──▶ Spec

Validation collects every schema problem before raising (``SpecErrors``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from nnspec.errors import Span, SpecError, SpecErrors
from nnspec.spec import messages
from nnspec.spec.yamlpos import Located, load

DEFAULT_MAX_MARKS = 10_000
MAX_MARKS_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class ModelSpec:
    factory: str | None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    checkpoint: str | None = None
    device: str = "auto"
    seed: int = 0
    span: Span | None = None
    factory_span: Span | None = None
    checkpoint_span: Span | None = None


@dataclass(frozen=True, slots=True)
class InputSpec:
    kind: str  # random | dataset | file
    options: dict
    span: Span | None = None

    def __post_init__(self):
        if self.kind not in ("random", "dataset", "file", "tokens"):
            raise ValueError(f"input kind {self.kind!r}: expected random, dataset, file or tokens")


@dataclass(frozen=True, slots=True)
class ViewSpec:
    query: str
    title: str
    description: str = ""
    width: int | None = None
    height: int | None = None
    max_marks: int = DEFAULT_MAX_MARKS
    id: str | None = None
    span: Span | None = None  # of the view
    query_span: Span | None = None  # of the query's first character
    query_quoted: bool = False
    group: str | None = None  # copies of one repeated view share it (and a row)
    columns: int | None = None  # a repeated view's copies per row
    repeat: tuple | None = None  # (var, selector text, span): one copy per module matched, once the model exists
    check: bool = False  # an expect: entry: its query ends in a comparison and draws nothing

    def __post_init__(self):
        if not 1 <= self.max_marks <= MAX_MARKS_LIMIT:
            raise ValueError(messages.max_marks_range(self.max_marks, MAX_MARKS_LIMIT))


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """``train:``: a small deterministic training loop run before the views."""

    steps: int
    batch: int | None = None  # None: the whole input each step
    seed: int = 0
    optimizer: dict = field(default_factory=lambda: {"name": "adam", "lr": 1e-3})
    record_every: int = 10
    span: Span | None = None
    run: str | None = None  # the run's directory; None: runs/<spec name>

    def __post_init__(self):
        if self.optimizer.get("name") not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer.get('name')!r}: expected one of {', '.join(OPTIMIZERS)}")


OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True, slots=True)
class Spec:
    path: str
    title: str
    description: str
    model: ModelSpec
    loss: str | None
    loss_span: Span | None
    input: InputSpec | None
    views: tuple[ViewSpec, ...]
    train: TrainSpec | None = None
    expect: tuple[ViewSpec, ...] = ()  # checks on query results (nnspec check)
    data: dict = field(default_factory=dict, hash=False, compare=False, repr=False)  # as parsed

    @property
    def hash(self) -> str:
        """Of the spec's content (not its formatting), stored with each run it records."""
        text = json.dumps(self.data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def run_dir(self) -> str:
        """Where ``train:`` writes its run: ``train.run`` if it is a path (has a slash),
        else ``$NNSPEC_RUNS/<train.run or the spec's name>`` (``runs/…`` by default,
        relative to the working directory like TensorBoard's)."""
        root = os.environ.get("NNSPEC_RUNS", "runs")
        run = self.train.run if self.train and self.train.run else self.name
        return run if ("/" in run or os.sep in run) else os.path.join(root, run)  # a bare name lives under runs/

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    @property
    def name(self) -> str:
        stem = os.path.splitext(os.path.basename(self.path))[0] if self.path else ""
        return stem or "dashboard"


@cache
def schema() -> dict:
    """The draft-07 JSON Schema that ships with the package."""
    return json.loads(resources.files("nnspec.spec").joinpath("schema.json").read_text())


def load_spec(source, file: str | None = None, vars: dict | None = None, values_files=()) -> Spec:
    """A Spec from a path, a YAML string (with ``file``) or a dict, templated:
    ``vars`` (like ``--set``) and ``values_files`` (like ``-f``) override the spec's vars."""
    if isinstance(source, Spec):
        return source
    return build(resolved(source, file, vars, values_files))


def resolved(source, file: str | None = None, vars: dict | None = None, values_files=()) -> Located:
    """The spec's tree after templating (extends, vars, ${…}, repeat, x-*), with its spans."""
    from nnspec.spec.template import Options, resolve

    if isinstance(source, dict):
        located = Located(data=source, file=file or "<dict>")
    else:
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise SpecError(messages.cannot_read(path, e.strerror or str(e))) from None
        located = load(text, path)
    return resolve(located, Options(tuple(values_files), dict(vars or {})))


def build(located: Located) -> Spec:
    """Validate ``located`` against the schema, then make the dataclasses."""
    errors = [_schema_error(located, e) for e in _validator().iter_errors(located.data)]
    views = located.data.get("views", []) if isinstance(located.data, dict) else []
    errors += [
        SpecError(messages.view_needs_query(), located.span(("views", i)), messages.view_needs_query_hint())
        for i, v in enumerate(views if isinstance(views, list) else [])
        if isinstance(v, dict) and "query" not in v
    ]
    if not isinstance(located.data, dict):
        raise SpecError(messages.not_a_mapping(), located.span(()))
    errors.sort(key=lambda e: (e.span.line, e.span.col) if e.span else (0, 0))
    if errors:
        raise SpecErrors(_dedupe(errors))
    d = located.data
    m = d.get("model", {})
    model = ModelSpec(
        factory=m.get("factory"),
        args=tuple(m.get("args", ())),
        kwargs=dict(m.get("kwargs", {})),
        checkpoint=m.get("checkpoint"),
        device=m.get("device", "auto"),
        seed=m.get("seed", 0),
        span=located.span(("model",)) if "model" in d else None,
        factory_span=located.span(("model", "factory")) if "model" in d else None,
        checkpoint_span=located.span(("model", "checkpoint")) if "checkpoint" in m else None,
    )
    inp = None
    if "input" in d:
        i = d["input"]
        kind = next(k for k in ("random", "dataset", "file", "tokens") if k in i)
        inp = InputSpec(kind, dict(i), located.span(("input",)))
    views = tuple(_view(located, n, v) for n, v in enumerate(d["views"]))
    return Spec(
        path=located.file if not located.file.startswith("<") else "",
        title=d.get("title", ""),
        description=d.get("description", ""),
        model=model,
        loss=d.get("loss"),
        loss_span=located.span(("loss",)) if "loss" in d else None,
        input=inp,
        views=views,
        train=_train(located, d["train"]) if "train" in d else None,
        expect=tuple(_check(located, i, text) for i, text in enumerate(d.get("expect", []))),
        data=d,
    )


def _train(located: Located, t: dict) -> TrainSpec:
    optimizer = {"name": "adam", "lr": 1e-3} | dict(t.get("optimizer", {}))
    return TrainSpec(
        steps=t["steps"],
        batch=t.get("batch"),
        seed=t.get("seed", 0),
        optimizer=optimizer,
        record_every=t.get("record_every", 10),
        span=located.span(("train",)),
        run=t.get("run"),
    )


def _view(located: Located, n: int, v: dict) -> ViewSpec:
    path = ("views", n)
    query = v["query"].strip()
    return ViewSpec(
        query=query,
        title=v.get("title") or query,
        description=v.get("description", ""),
        width=v.get("width"),
        height=v.get("height"),
        max_marks=v.get("max_marks", DEFAULT_MAX_MARKS),
        id=v.get("id"),
        span=located.span(path),
        query_span=located.span(path + ("query",)),
        query_quoted=located.styles.get(path + ("query",)) in ('"', "'"),
        group=v.get("x-group"),
        columns=v.get("columns"),
        repeat=_repeat(located, path, v.get("repeat")),
    )


def _check(located: Located, i: int, text: str) -> ViewSpec:
    path = ("expect", i)
    return ViewSpec(
        query=text.strip(),
        title=text.strip(),
        span=located.span(path),
        query_span=located.span(path),
        query_quoted=located.styles.get(path) in ('"', "'"),
        check=True,
    )


def _repeat(located: Located, path, rep: dict | None):
    if not rep:
        return None
    ((var, selector),) = rep.items()
    return (var, selector, located.span(path + ("repeat", var)))


@cache
def _validator():
    import jsonschema

    return jsonschema.Draft7Validator(schema())


def _schema_error(located: Located, e) -> SpecError:
    """One jsonschema error as a SpecError located in the YAML file."""
    path = tuple(e.absolute_path)
    where = ".".join(str(p) for p in path) or "spec"
    if e.validator == "additionalProperties":
        allowed = sorted(e.schema.get("properties", {}))
        extra = sorted(k for k in e.instance if k not in allowed and not str(k).startswith("x-"))
        key = extra[0] if extra else ""
        close = difflib.get_close_matches(key, allowed, n=1)
        return SpecError(
            messages.unknown_key(key, where, allowed),
            located.span(path + (key,), key=True),
            messages.did_you_mean(close[0]) if close else None,
        )
    if e.validator == "required":
        missing = e.message.split("'")[1] if "'" in e.message else e.message
        return SpecError(messages.missing_key(missing, where), located.span(path))
    if e.validator == "oneOf" and path == ("input",):
        return SpecError(messages.input_kinds(), located.span(path))
    if e.validator == "const":
        return SpecError(messages.bad_const(where, e.instance, e.validator_value), located.span(path))
    if e.validator == "enum":
        close = difflib.get_close_matches(str(e.instance), [str(c) for c in e.validator_value], n=1)
        return SpecError(
            messages.bad_choice(where, e.instance, e.validator_value),
            located.span(path),
            messages.did_you_mean(close[0]) if close else None,
        )
    hint = messages.yaml_bool_hint() if _has_bool(e.instance) else None
    if e.validator == "anyOf" and e.context:  # a value or a ${var}: the value's own problem says more
        return SpecError(messages.schema_problem(where, e.context[0].message), located.span(path), hint)
    return SpecError(messages.schema_problem(where, e.message), located.span(path), hint)


def _has_bool(value) -> bool:
    """YAML 1.1 reads on/off/yes/no unquoted as booleans: a common surprise."""
    if isinstance(value, bool):
        return True
    return isinstance(value, list) and any(isinstance(v, bool) for v in value)


def _dedupe(errors: list[SpecError]) -> list[SpecError]:
    seen, out = set(), []
    for e in errors:
        key = (e.span, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
