"""``nnspec render | serve | validate | plan | layers | schema``: a thin layer over the API.

Exit codes: 0 ok, 1 a spec, model or render failure, 2 bad command-line usage.
Torch and Altair load only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import sys

from nnspec.errors import NnspecError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnspec", description="Pictures of a neural network from a YAML spec.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    r = sub.add_parser("render", help="render a spec into a dashboard (and JSON/PNG/SVG/PDF)")
    r.add_argument("spec")
    r.add_argument("-o", "--out", default="out", help="output folder (default: out)")
    r.add_argument(
        "-F",
        "--format",
        default="html",
        help="comma-separated: html,json,png,svg,pdf (default: html)",
    )
    _template_args(r)
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no list of files")
    r.add_argument(
        "--watch",
        action="store_true",
        help="render again whenever the spec, a file it extends, the model's files or a --run changes",
    )
    r.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="DIR",
        help="draw the views over steps from this recorded run (repeat to compare runs side by side); "
        "the spec's train: is then not re-run",
    )
    sv = sub.add_parser(
        "serve", help="serve the dashboard on 127.0.0.1, kept current as the spec, its files and its runs change"
    )
    sv.add_argument("spec")
    sv.add_argument("--port", type=int, default=6070, help="the port on 127.0.0.1 (default: 6070; 0: a free one)")
    _template_args(sv)
    sv.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="DIR",
        help="draw the views over steps from this recorded run, redrawn as it grows (repeat to compare runs)",
    )
    sv.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    v = sub.add_parser("validate", help="check a spec's keys and query syntax (no model is built)")
    v.add_argument("spec", nargs="+")
    pl = sub.add_parser("plan", help="print the capture plan (EXPLAIN) of a spec")
    pl.add_argument("spec")
    _template_args(pl)
    ck = sub.add_parser("check", help="evaluate the spec's expect: checks; exit 1 if one fails (draws nothing)")
    ck.add_argument("spec")
    ck.add_argument("--run", action="append", default=[], metavar="DIR", help="check views over steps on this run")
    _template_args(ck)
    rs = sub.add_parser("resolve", help="print the spec after templating (extends, vars, repeat), like helm template")
    rs.add_argument("spec")
    _template_args(rs)
    ly = sub.add_parser("layers", help="list the model's module paths, types and parameter shapes")
    ly.add_argument("spec")
    ly.add_argument(
        "--shapes", action="store_true", help="run the spec's input through the model: input and output shapes"
    )
    for command in (r, sv, v, pl, ck, rs, ly):
        command.add_argument(
            "--root",
            metavar="DIR",
            help="confine the files the spec reads and writes (extends, -f, inputs, checkpoints, runs) to DIR",
        )
    sub.add_parser("schema", help="print the spec file's JSON Schema (draft-07)")
    ex = sub.add_parser("export", help="write a recorded run in another tool's format: tensorboard (event files)")
    ex.add_argument("to", choices=["tensorboard"], help="the format: tensorboard")
    ex.add_argument("run_dir", metavar="RUN", help="the run directory (written by train: or a Recorder)")
    ex.add_argument("out", metavar="DIR", help="where the event files go (created; never one that holds some)")
    it = sub.add_parser("init", help="write a starter spec for a model (renders without edits)")
    source = it.add_mutually_exclusive_group(required=True)
    source.add_argument("--factory", help="pkg.module:callable or path/file.py:callable")
    source.add_argument("--file", help="a model file: .onnx, .keras/.h5, .safetensors, a state_dict, .pt2, TorchScript")
    it.add_argument("--input-shape", help="the input's shape, batch first, e.g. 8,3,32,32 (default: guessed)")
    it.add_argument("-o", "--out", default="nnspec.yaml", help="the spec file to write (default: nnspec.yaml)")
    it.add_argument("--force", action="store_true", help="replace the file if it exists")
    return p


def _template_args(p) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a spec variable (the value is read as YAML); wins over -f files and the spec's vars",
    )
    p.add_argument(
        "-f",
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML file of variable values (repeatable; later files win), like helm -f",
    )


def _template(args) -> dict:
    """``vars`` and ``values_files`` for load_spec, from --set and -f."""
    from nnspec.spec.template import parse_set

    return {"vars": dict(parse_set(t) for t in args.set), "values_files": tuple(args.values)}


# jsonschema's format checkers' optional packages (``jsonschema[format]``, beside Jupyter)
_FORMAT_PACKAGES = (
    "fqdn", "idna", "isoduration", "jsonpointer", "rfc3339_validator", "rfc3986_validator", "rfc3987",
    "rfc3987_syntax", "uri_template", "webcolors",
)  # fmt: skip


def _import_jsonschema_lean() -> None:
    """Import jsonschema (the spec's check, and Altair's) without its format packages.

    Where they are installed (Jupyter's ``jsonschema[format-nongpl]`` puts them
    beside most ML environments), jsonschema imports them all, and
    ``rfc3987-syntax`` builds 38 Lark grammars: about 1.1 s of every command, for
    format checks that nnspec never runs (its spec check has no format checker,
    and charts are checked by ``output/validate.py``). The command's own process
    imports jsonschema with them hidden; they stay importable afterwards. A
    library user's process (``nnspec.render``) is left as it is."""
    if "jsonschema" in sys.modules:
        return
    hidden = [m for m in _FORMAT_PACKAGES if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # an ImportError, which jsonschema expects
    try:
        import jsonschema  # noqa: F401
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]


def main(argv=None) -> int:
    from nnspec.paths import confine

    args = _parser().parse_args(argv)
    _import_jsonschema_lean()
    args.run_patterns = tuple(getattr(args, "run", None) or ())  # as given: serve and --watch expand them per poll
    if args.run_patterns:
        args.run = run_dirs(args.run_patterns)
    try:
        with confine(getattr(args, "root", None)):
            return _COMMANDS[args.command](args)
    except NnspecError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # a bug of ours: say so briefly, without a traceback
        print(
            f"internal error: {type(e).__name__}: {e}\nplease report this with the spec that caused it", file=sys.stderr
        )
        return 1


def run_dirs(values) -> list[str]:
    """``--run`` values, a glob (``--run 'runs/*'``, quoted so the shell leaves it) expanded to the
    run folders it matches in name order; a glob matching none stays, to fail as "no run at".

    ``serve`` and ``render --watch`` call it again before every render, so a run made (or
    removed) while they run is drawn (or dropped)."""
    import glob
    import os

    out = []
    for v in values:
        if not glob.has_magic(v):
            out.append(v)
            continue
        found = sorted(
            d
            for d in glob.glob(v)
            if os.path.isfile(os.path.join(d, "run.sqlite"))
            or (os.path.isdir(d) and any(n.startswith("events.out.tfevents.") for n in os.listdir(d)))
        )
        out.extend(found or [v])
    return out


def _render(args) -> int:
    from nnspec.output.write import FORMATS

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if not formats:
        print(f"nnspec render: error: -F/--format names no format (choose from {', '.join(FORMATS)})", file=sys.stderr)
        return 2
    if args.out is not None and not str(args.out).strip():
        print("nnspec render: error: -o/--out names no folder", file=sys.stderr)
        return 2
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        print(f"nnspec render: error: unknown format '{bad[0]}' (choose from {', '.join(FORMATS)})", file=sys.stderr)
        return 2
    if args.watch:
        from nnspec.cli.watch import watch

        def once():
            _render_once(args, formats, run_dirs(args.run_patterns))  # a run made since the last render is drawn

        def say(text):
            print(text, file=sys.stderr, flush=True)

        try:
            watch(args.spec, once, say, runs=args.run_patterns, **_template(args))
        except KeyboardInterrupt:
            return 0
        return 0
    return _render_once(args, formats)


def _render_once(args, formats, runs=None) -> int:
    """One render of ``args.spec`` drawing ``runs`` (else ``--run`` as expanded at the start)."""
    from nnspec.pipeline import render

    runs = args.run if runs is None else runs
    dash = render(args.spec, out=args.out, formats=formats, progress=not args.quiet, runs=runs, **_template(args))
    failed = [v for v in dash.views if v.error]
    for v in failed:
        print(f"view '{v.title}' failed:\n{v.error}", file=sys.stderr)
    if not args.quiet:
        for path in dash.files:
            print(path)
    if failed:
        print(f"{len(failed)} of {len(dash.views)} views failed", file=sys.stderr)
        return 1
    return 0


def _serve(args) -> int:
    from nnspec.cli.serve import serve

    if not 0 <= args.port <= 65535:
        print(f"nnspec serve: error: --port {args.port}: expected 0 to 65535", file=sys.stderr)
        return 2
    return serve(args.spec, args.port, runs=args.run_patterns, interval=args.interval, **_template(args))


def _validate(args) -> int:
    from nnspec.query.parser import parse, query_span
    from nnspec.spec.load import load_spec
    from nnspec.spec.template import substitute

    status = 0
    for path in args.spec:
        try:
            spec = load_spec(path)
            for v in spec.views + spec.expect:
                text = str(substitute(v.query, {v.repeat[0]: "x"})) if v.repeat else v.query  # a selector repeat
                parse(text, query_span(v.query_span, v.query_quoted, text))
            print(f"{path}: ok ({len(spec.views)} views)")
        except NnspecError as e:
            print(str(e), file=sys.stderr)
            status = 1
    return status


def _plan(args) -> int:
    from nnspec.pipeline import plan

    print(plan(args.spec, **_template(args)).explain())
    return 0


def _check(args) -> int:
    from nnspec.pipeline import check

    results = check(args.spec, runs=args.run, **_template(args))
    if not results:
        print(f"{args.spec}: no expect: entries to check")
        return 0
    for r in results:
        print(r.line())
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} of {len(results)} checks pass")
    return 1 if failed else 0


def _init(args) -> int:
    from nnspec.cli.init import write
    from nnspec.errors import SpecError

    shape = None
    if args.input_shape:
        try:
            shape = [int(n) for n in args.input_shape.replace("x", ",").split(",") if n.strip()]
        except ValueError:
            raise SpecError(f"--input-shape '{args.input_shape}': expected integers like 8,3,32,32") from None
    for path in write(args.factory, args.out, shape, args.force, args.file):
        print(path)
    return 0


def _resolve(args) -> int:
    import yaml

    from nnspec.spec.load import load_spec, resolved

    t = _template(args)
    spec = load_spec(args.spec, **t)  # validated: an invalid result is an error, not a listing
    data = resolved(args.spec, **t).data
    if any(v.repeat for v in spec.views):  # repeat over a selector: the model says which modules
        from nnspec.compiler.repeat import expand_repeats
        from nnspec.inputs.model import build_model

        data["views"] = [_view_data(v) for v in expand_repeats(spec, build_model(spec)).views]
    order = ("nnspec", "title", "description", "model", "loss", "input", "train", "views", "expect")
    data = {k: data[k] for k in order if k in data} | {k: v for k, v in data.items() if k not in order}
    print(yaml.safe_dump(_without_internal(data), sort_keys=False, allow_unicode=True), end="")
    return 0


def _view_data(v) -> dict:
    from nnspec.spec.load import DEFAULT_MAX_MARKS

    d = {"id": v.id, "title": v.title, "query": v.query, "description": v.description or None}
    d |= {"width": v.width, "height": v.height, "columns": v.columns}
    if v.max_marks != DEFAULT_MAX_MARKS:
        d["max_marks"] = v.max_marks
    return {k: x for k, x in d.items() if x is not None}


def _without_internal(data):
    if isinstance(data, dict):
        return {k: _without_internal(v) for k, v in data.items() if k != "x-group"}
    if isinstance(data, list):
        return [_without_internal(v) for v in data]
    return data


def _layers(args) -> int:
    from nnspec.inputs.model import build_model, layers_text
    from nnspec.spec.load import load_spec

    spec = load_spec(args.spec)
    model = build_model(spec)
    if not args.shapes:
        print(layers_text(model))
        return 0
    from nnspec.pipeline import summary

    print(summary(spec, model))
    return 0


def _schema(args) -> int:
    import json

    from nnspec.spec.load import schema

    print(json.dumps(schema(), indent=2))
    return 0


def _export(args) -> int:
    from nnspec.runs.tensorboard import export

    for path in export(args.run_dir, args.out):
        print(path)
    return 0


_COMMANDS = {
    "render": _render,
    "serve": _serve,
    "validate": _validate,
    "plan": _plan,
    "resolve": _resolve,
    "check": _check,
    "init": _init,
    "layers": _layers,
    "schema": _schema,
    "export": _export,
}

if __name__ == "__main__":
    sys.exit(main())
