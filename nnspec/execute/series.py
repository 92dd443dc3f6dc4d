"""Views over steps: the records of one or more runs as tidy tables.

    series            step, layer, value, run               (a value per layer and step)
    stats_series      step, layer, STATS_FIELDS, run
    histogram_series  step, layer, bin_start, bin_end, count, nan, inf, run  (nan, inf: of the whole step)

The first step at which a run saw a NaN or Inf (in its loss or in any record)
goes into ``Data.options["nonfinite"]`` so that every series chart marks it.
What a run says about itself (``run.notes``: unfinished, "stopped at step 829
of 3,000"; written by an older nnspec) is a note on every view over steps.
"""

from __future__ import annotations

import fnmatch

import pandas as pd

from nnspec.backends import backend_for
from nnspec.compiler import messages as compiler_messages
from nnspec.compiler.plan import ViewPlan
from nnspec.errors import SpecError
from nnspec.execute import messages
from nnspec.execute.data import Context, Data, histogram_edges
from nnspec.numerics.partials import HISTOGRAM_HEAD
from nnspec.numerics.reduce import STATS_FIELDS


def over_steps(vp: ViewPlan, context: Context) -> Data:
    src = vp.query.source
    lo, hi = vp.query.over
    if not context.runs:
        raise SpecError(compiler_messages.needs_train(), src.span, compiler_messages.needs_train_hint())
    kind = _kind(vp)
    frames, notes, nonfinite = [], [], {}
    several = len(context.runs) > 1
    for run in context.runs:
        missing = run.missing(vp.captures)
        if missing:
            same = run.meta.get("spec_name") == context.spec_name
            raise SpecError(
                messages.run_lacks(run.name, [c.series_key for c in missing], run.meta.get("spec_name", "?"), same),
                src.span,
                messages.run_lacks_hint(),
            )
        if src.kind == "loss":
            frame = _loss(run, lo, hi)
        elif src.kind == "scalars":
            frame = _scalars(run, src, lo, hi)
        else:
            frame = _records(run, vp, kind, lo, hi)
        notes += [n for n in getattr(run, "notes", ()) if n not in notes]
        notes += _nonfinite_notes(frame, kind, run.name if several else "")
        frame["run"] = run.name
        frames.append(frame)
        if context.model is not None and run.meta.get("model_hash") not in (
            None,
            backend_for(context.model).fingerprint(),
        ):
            notes.append(messages.note_other_model(run.name))
        bad = run.first_nonfinite()
        if bad is not None:
            nonfinite[run.name] = bad
            notes.append((f"{run.name}: " if several else "") + messages.note_first_nonfinite_step(bad))
    table = pd.concat(frames, ignore_index=True)
    if table.empty:
        raise SpecError(messages.no_steps_in_range(lo, hi), src.span)
    label = src.kind if src.kind in ("loss", "scalars") else f"{src.kind} | {vp.captures[0].reduce}"
    return Data(kind, table=table, notes=notes, label=label, options={"nonfinite": nonfinite, "runs": several})


def _kind(vp: ViewPlan) -> str:
    if vp.query.source.kind in ("loss", "scalars"):
        return "series"
    op = vp.captures[0].reduce.op
    return {"stats": "stats_series", "histogram": "histogram_series"}.get(op, "series")


def _loss(run, lo, hi) -> pd.DataFrame:
    rows = run.losses(lo, hi)
    return pd.DataFrame({"step": [s for s, _ in rows], "layer": "loss", "value": [v for _, v in rows]})


def _scalars(run, src, lo, hi) -> pd.DataFrame:
    """The run's scalars whose tags match the query's patterns (globs), one series per tag."""
    series = run.scalar_series(lo, hi)
    patterns = src.arg("tags")
    tags = [t for t in series if any(fnmatch.fnmatchcase(t, p) for p in patterns)]
    if not tags:
        raise SpecError(messages.no_scalars(run.name, patterns, list(series)), src.span)
    rows = [(s, t, v) for t in tags for s, v in series[t]]
    return pd.DataFrame(rows, columns=["step", "layer", "value"])


def _records(run, vp: ViewPlan, kind: str, lo, hi) -> pd.DataFrame:
    frames = []
    for layer, c in zip(vp.layers, vp.captures):
        rows = run.records(c, lo, hi)
        if kind == "stats_series":
            frame = pd.DataFrame([dict(zip(STATS_FIELDS, v.tolist())) for _, v in rows], columns=STATS_FIELDS)
            for k in ("numel", "nan", "inf"):
                frame[k] = frame[k].astype("int64")
        elif kind == "histogram_series":
            frame = _bins(rows, HISTOGRAM_HEAD)
        else:
            frame = pd.DataFrame({"value": [float(v[0]) for _, v in rows]})
        if kind != "histogram_series":
            frame.insert(0, "step", [s for s, _ in rows])
        frame.insert(1, "layer", layer)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _bins(rows, head) -> pd.DataFrame:
    out = []
    for step, v in rows:
        lo, hi, nan, inf = (float(x) for x in v[:4])
        counts = v[len(head) :]
        starts, ends = histogram_edges(lo, hi, len(counts))
        for start, end, count in zip(starts, ends, counts.tolist()):
            out.append((step, start, end, int(count), int(nan), int(inf)))
    return pd.DataFrame(out, columns=["step", "bin_start", "bin_end", "count", "nan", "inf"])


def _nonfinite_notes(frame: pd.DataFrame, kind: str, run: str) -> list[str]:
    """Stats and histograms count NaN/Inf apart from the values they draw: say where."""
    if kind == "series" or frame.empty:
        return []
    per = frame.groupby(["layer", "step"], sort=False)[["nan", "inf"]].max().reset_index()
    bad = per[(per["nan"] > 0) | (per["inf"] > 0)]
    prefix = f"{run}: " if run else ""
    return [
        prefix
        + messages.note_nonfinite_steps(
            layer, len(rows), int(per[per.layer == layer].shape[0]), int(rows["step"].min())
        )
        for layer, rows in bad.groupby("layer", sort=False)
    ]
