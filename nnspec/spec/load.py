"""Stage 1: load a spec file into frozen dataclasses that know their spans.

    text ──yamlpos.load──▶ data + spans ──schema (draft-07)──▶ Spec

Validation collects every schema problem before raising (``SpecErrors``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

from nnspec.errors import Span, SpecError, SpecErrors
from nnspec.paths import check_inside, confine, current_root
from nnspec.spec import messages
from nnspec.spec.yamlpos import Located, Path, load, read

if TYPE_CHECKING:
    import jsonschema

Checked: TypeAlias = dict[str, Any]
"""A mapping that schema.json has accepted: the schema, not mypy, knows the shape of its values."""

Source: TypeAlias = str | os.PathLike[str] | dict[str, Any]
"""A spec file's path, or the spec itself as a dict (of any values: the schema checks them)."""

DEFAULT_MAX_MARKS = 10_000
MAX_MARKS_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class ModelSpec:
    factory: str | None
    args: tuple[object, ...] = ()
    kwargs: dict[str, object] = field(default_factory=dict)
    checkpoint: str | None = None
    device: str = "auto"
    seed: int = 0
    span: Span | None = None
    factory_span: Span | None = None
    checkpoint_span: Span | None = None
    output: str | None = None  # which part of the model's output the built-in losses use
    file: str | None = None  # a model file (ONNX, Keras, safetensors, .pt2, …), relative to the spec
    file_span: Span | None = None


INPUT_KINDS = ("random", "dataset", "file", "tokens", "ones", "zeros", "full")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input source (``kind`` one of INPUT_KINDS), or ``call``: the model's
    positional ``args`` and keyword ``kwargs`` each from a source, and a ``target``."""

    kind: str
    options: Checked
    span: Span | None = None
    args: tuple[InputSpec, ...] = ()
    kwargs: tuple[tuple[str, InputSpec], ...] = ()
    target: InputSpec | None = None

    def __post_init__(self) -> None:
        if self.kind not in (*INPUT_KINDS, "call"):
            raise ValueError(f"input kind {self.kind!r}: expected one of {', '.join(INPUT_KINDS)} or call")


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
    # (var, selector text, span): one copy per module matched, once the model exists
    repeat: tuple[str, str, Span | None] | None = None
    check: bool = False  # an expect: entry: its query ends in a comparison and draws nothing

    def __post_init__(self) -> None:
        if not 1 <= self.max_marks <= MAX_MARKS_LIMIT:
            raise ValueError(messages.max_marks_range(self.max_marks, MAX_MARKS_LIMIT))


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """``train:``: a small deterministic training loop run before the views."""

    steps: int
    batch: int | None = None  # None: the whole input each step
    seed: int = 0
    optimizer: Checked = field(default_factory=lambda: {"name": "adam", "lr": 1e-3})
    record_every: int = 10
    span: Span | None = None
    run: str | None = None  # the run's directory; None: runs/<spec name>
    run_span: Span | None = None

    def __post_init__(self) -> None:
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
    data: dict[str, object] = field(default_factory=dict, hash=False, compare=False, repr=False)  # as parsed
    root: str | None = None  # the folder its files must lie in (load_spec's root=), resolved; None: anywhere

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
        runs = os.environ.get("NNSPEC_RUNS", "runs")
        run = self.train.run if self.train and self.train.run else self.name
        path = run if ("/" in run or os.sep in run) else os.path.join(runs, run)  # a bare name lives under runs/
        if self.root or current_root():  # confined: the run is written under the root too
            t = self.train
            check_inside(os.path.abspath(path), (t.run_span or t.span) if t else None, "run", self.root)
        return path

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    @property
    def name(self) -> str:
        stem = os.path.splitext(os.path.basename(self.path))[0] if self.path else ""
        return stem or "dashboard"


@cache
def schema() -> dict[str, object]:
    """The draft-07 JSON Schema that ships with the package."""
    document: dict[str, object] = json.loads(resources.files("nnspec.spec").joinpath("schema.json").read_text())
    return document


def load_spec(
    source: Spec | Source,
    file: str | None = None,
    vars: Mapping[str, object] | None = None,
    values_files: Iterable[str] = (),
    root: str | os.PathLike[str] | None = None,
) -> Spec:
    """A Spec from a path, a YAML string (with ``file``) or a dict, templated:
    ``vars`` (like ``--set``) and ``values_files`` (like ``-f``) override the spec's vars.
    ``root``: every file the spec reads (itself, what it extends, values files) and, once
    rendered under ``nnspec.paths.confine(root)``, its inputs, checkpoints and runs must lie
    in that folder tree (default: the ``confine`` in force, if any)."""
    if isinstance(source, Spec):
        return source
    with confine(root) as real:
        spec = build(resolved(source, file, vars, values_files))
    return replace(spec, root=real) if real is not None else spec


def resolved(
    source: Source,
    file: str | None = None,
    vars: Mapping[str, object] | None = None,
    values_files: Iterable[str] = (),
    root: str | os.PathLike[str] | None = None,
) -> Located:
    """The spec's tree after templating (extends, vars, ${…}, repeat, x-*), with its spans."""
    from nnspec.spec.template import Options, resolve

    with confine(root):
        if isinstance(source, dict):
            located = Located(data=source, file=file or "<dict>")
        else:
            path = os.fspath(source)
            located = load(read(check_inside(path, None, "spec file")), path)
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
    d: Checked = located.data
    m: Checked = d.get("model", {})
    model = ModelSpec(
        factory=m.get("factory"),
        args=tuple(m.get("args", ())),
        kwargs=dict(m.get("kwargs", {})),
        checkpoint=m.get("checkpoint"),
        output=m.get("output"),
        file=m.get("file"),
        file_span=located.span(("model", "file")) if "file" in m else None,
        device=m.get("device", "auto"),
        seed=m.get("seed", 0),
        span=located.span(("model",)) if "model" in d else None,
        factory_span=located.span(("model", "factory")) if "model" in d else None,
        checkpoint_span=located.span(("model", "checkpoint")) if "checkpoint" in m else None,
    )
    inp = _input(located, d["input"], ("input",)) if "input" in d else None
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


def _input(located: Located, i: Checked, path: Path) -> InputSpec:
    """``input:`` (or one of its sources), with the span of each part."""
    kind = next((k for k in INPUT_KINDS if k in i), "call")
    if kind != "call":
        return InputSpec(kind, dict(i), located.span(path))
    args = tuple(_input(located, a, path + ("args", n)) for n, a in enumerate(i.get("args", [])))
    kwargs = tuple((str(k), _input(located, v, path + ("kwargs", k))) for k, v in i.get("kwargs", {}).items())
    target = i.get("target")
    return InputSpec(
        "call",
        {k: v for k, v in i.items() if k not in ("args", "kwargs", "target")},
        located.span(path),
        args,
        kwargs,
        _input(located, target, path + ("target",)) if isinstance(target, dict) else None,
    )


def _train(located: Located, t: Checked) -> TrainSpec:
    optimizer = {"name": "adam", "lr": 1e-3} | dict(t.get("optimizer", {}))
    return TrainSpec(
        steps=t["steps"],
        batch=t.get("batch"),
        seed=t.get("seed", 0),
        optimizer=optimizer,
        record_every=t.get("record_every", 10),
        span=located.span(("train",)),
        run=t.get("run"),
        run_span=located.span(("train", "run")) if "run" in t else None,
    )


def _view(located: Located, n: int, v: Checked) -> ViewSpec:
    path: Path = ("views", n)
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
    path: Path = ("expect", i)
    return ViewSpec(
        query=text.strip(),
        title=text.strip(),
        span=located.span(path),
        query_span=located.span(path),
        query_quoted=located.styles.get(path) in ('"', "'"),
        check=True,
    )


def _repeat(located: Located, path: Path, rep: Checked | None) -> tuple[str, str, Span | None] | None:
    if not rep:
        return None
    ((var, selector),) = rep.items()
    return (var, selector, located.span(path + ("repeat", var)))


@cache
def _validator() -> jsonschema.Draft7Validator:
    """Draft-07 over the resolved spec: an integer is an int (``steps: 5.0`` is not one, as
    jsonschema would have it), and a ``${var}`` left after templating is no number."""
    import jsonschema
    from jsonschema import validators

    def is_int(checker: object, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", is_int)
    strict: type[jsonschema.Draft7Validator] = validators.extend(jsonschema.Draft7Validator, type_checker=checker)
    return strict(_without_vars(schema()))


_VAR_PATTERN = "^\\$\\{[^}]+\\}$"


def _without_vars(node: object) -> Any:
    """The schema less its ``${var}`` alternatives (there for editors, on the unresolved file)."""
    if isinstance(node, list):
        return [_without_vars(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _without_vars(v) for k, v in node.items()}
    choices = out.get("anyOf")
    if isinstance(choices, list):
        kept = [c for c in choices if not (isinstance(c, dict) and c.get("pattern") == _VAR_PATTERN)]
        if len(kept) == 1 and isinstance(kept[0], dict):
            del out["anyOf"]
            out.update(kept[0])
        else:
            out["anyOf"] = kept
    return out


def _schema_error(located: Located, e: jsonschema.ValidationError) -> SpecError:
    """One jsonschema error as a SpecError located in the YAML file."""
    path: Path = tuple(e.absolute_path)
    where = ".".join(str(p) for p in path) or "spec"
    if e.validator == "additionalProperties":
        # jsonschema sets both on the errors it yields (its stubs also allow a bool schema and `Unset`)
        assert isinstance(e.schema, Mapping) and isinstance(e.instance, dict)
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
    if e.validator == "oneOf" and path[:1] == ("input",):
        return SpecError(messages.input_kinds(where), located.span(path))
    if e.validator == "const":
        return SpecError(messages.bad_const(where, e.instance, e.validator_value), located.span(path))
    if e.validator == "enum":
        assert isinstance(e.validator_value, list)  # the enum's choices, from schema.json
        close = difflib.get_close_matches(str(e.instance), [str(c) for c in e.validator_value], n=1)
        return SpecError(
            messages.bad_choice(where, e.instance, e.validator_value),
            located.span(path),
            messages.did_you_mean(close[0]) if close else None,
        )
    hint = messages.yaml_bool_hint() if _has_bool(e.instance) else None
    if e.validator == "anyOf" and path == ("model",):
        return SpecError(messages.model_needs_source(), located.span(path))
    if e.validator == "anyOf" and e.context:  # a value or a ${var}: the value's own problem says more
        return SpecError(messages.schema_problem(where, e.context[0].message), located.span(path), hint)
    return SpecError(messages.schema_problem(where, e.message), located.span(path), hint)


def _has_bool(value: object) -> bool:
    """YAML 1.1 reads on/off/yes/no unquoted as booleans: a common surprise."""
    if isinstance(value, bool):
        return True
    return isinstance(value, list) and any(isinstance(v, bool) for v in value)


def _dedupe(errors: list[SpecError]) -> list[SpecError]:
    seen: set[tuple[Span | None, str]] = set()
    out: list[SpecError] = []
    for e in errors:
        key = (e.span, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
