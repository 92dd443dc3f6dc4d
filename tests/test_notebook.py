"""Notebooks that survive reopening: docs/notebook.ipynb (plus a cell that shows a view's
``.chart``) executed by nbclient, saved, read back, and its nnspec outputs checked to draw in
an untrusted notebook, offline: a Vega-Lite mimetype JupyterLab and VS Code render natively,
a PNG, nothing that needs trust or the network, each output small."""

from __future__ import annotations

import base64
import copy
import json
import os
import pickle
import struct
import zlib

import pytest

from tests.conftest import ROOT

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

VEGALITE_MIME = "application/vnd.vegalite.v5+json"
MAX_OUTPUT = 300_000  # bytes of one output as saved; quickstart's are 10-15 kB, the iframe was 1.05 MB

# How JupyterLab 4.x picks the mimetype it draws an output with (@jupyterlab/outputarea,
# OutputArea.createRenderedMimetype): rendermime.preferredMimeType(data, trusted ? 'any' :
# 'ensure'), i.e. in an untrusted notebook the first mimetype, by rank, whose renderer factory
# is `safe`. Ranks and flags from @jupyterlab/rendermime src/factories.ts and
# @jupyterlab/vega5-extension src/index.ts (JupyterLab 4.6/4.7). text/html is "safe" because it
# is sanitized (scripts and iframes removed): that blanked the old iframe output, which then
# never fell through to its PNG.
JUPYTERLAB_RENDERERS = (  # (rank, safe, mimetypes)
    (50, True, ("text/html",)),
    (57, True, ("application/vnd.vega.v5+json", *(f"application/vnd.vegalite.v{v}+json" for v in (3, 4, 5)))),
    (60, True, ("text/markdown",)),
    (70, True, ("text/latex",)),
    (80, False, ("image/svg+xml",)),
    (90, True, ("image/bmp", "image/png", "image/jpeg", "image/gif", "image/webp")),
    (110, False, ("text/javascript", "application/javascript")),
    (120, True, ("text/plain", "application/vnd.jupyter.stdout")),
)


def jupyterlab_choice(data: dict, trusted: bool) -> str | None:
    for _, safe, mimetypes in sorted(JUPYTERLAB_RENDERERS):
        for mt in mimetypes:
            if mt in data and (safe or trusted):
                return mt
    return None


@pytest.fixture(scope="module")
def saved_notebook(tmp_path_factory):
    """docs/notebook.ipynb, with one more cell showing a view's chart, executed and saved."""
    path = os.path.join(ROOT, "docs", "notebook.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("dash.views[0].chart  # an Altair chart: it draws offline too"))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}
    )
    with pytest.MonkeyPatch.context() as mp:  # the kernel imports this checkout's nnspec, installed or not
        mp.setenv("PYTHONPATH", os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
        client.execute()
    saved = tmp_path_factory.mktemp("nb") / "notebook.ipynb"
    nbformat.write(nb, str(saved))
    return nbformat.read(str(saved), as_version=4)  # what a reopened notebook holds


def rich_outputs(cell) -> list:
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


def test_the_saved_notebook_shows_a_header_then_one_output_per_view(saved_notebook):
    cells = [c for c in saved_notebook.cells if c.cell_type == "code"]
    dash_outs = rich_outputs(cells[0])
    assert len(dash_outs) == 1 + 5  # quickstart's title and checks, then its five views
    assert dash_outs[0].data["text/markdown"].startswith("### Quickstart")
    assert dash_outs[0].data["text/plain"].startswith("nnspec dashboard 'Quickstart")
    views = dash_outs[1:]
    assert [o.data["text/plain"] for o in views][0] == "fc1 weights (hidden × input)"
    assert all(set(o.data) == {VEGALITE_MIME, "image/png", "text/plain"} for o in views)
    printed = "".join(o.get("text", "") for o in cells[1].outputs)
    assert printed.startswith("altair (")  # view.chart is still an Altair chart
    shown = rich_outputs(cells[2])  # nnspec.show: a dashboard of one view
    assert len(shown) == 2 and VEGALITE_MIME in shown[1].data
    (chart,) = rich_outputs(cells[3])
    assert chart.output_type == "execute_result" and set(chart.data) == {VEGALITE_MIME, "image/png", "text/plain"}
    assert chart.data[VEGALITE_MIME] == views[0].data[VEGALITE_MIME]


def test_every_output_draws_untrusted_offline_and_small(saved_notebook):
    nnspec_outs = [o for c in saved_notebook.cells if c.cell_type == "code" for o in rich_outputs(c)]
    assert len(nnspec_outs) == 9
    # nbformat's trust: the saved notebook is not signed, and by nbformat's rule its rich outputs
    # are not trusted either (any display_data is). So what shows is what JupyterLab draws
    # untrusted, with its safe renderers: the Vega-Lite renderer for a view, Markdown for the header.
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary(db_file=":memory:", secret=b"nnspec-test")
    assert not notary.check_signature(saved_notebook)
    assert not notary.check_cells(copy.deepcopy(saved_notebook))
    for out in nnspec_outs:
        text = json.dumps(out)
        assert len(text) < MAX_OUTPUT, (out.data["text/plain"], len(text))
        assert "text/html" not in out.data and "<script" not in text and "<iframe" not in text
        assert "http" not in text  # no CDN, no schema URL: nothing to fetch
        chosen = jupyterlab_choice(out.data, trusted=False)
        assert chosen == (VEGALITE_MIME if VEGALITE_MIME in out.data else "text/markdown")
    old = {"text/html": "<iframe srcdoc=…>", "image/png": "…", "text/plain": "…"}  # what it was
    assert jupyterlab_choice(old, trusted=False) == "text/html"  # sanitized: blank


def test_the_specs_are_vega_lite_5_and_the_pngs_the_views(saved_notebook):
    """The v5 mimetype holds the spec Altair 6 wrote (Vega-Lite 6.4) less its $schema. It is
    valid against the schema Altair ships (v6) and draws the same SVG with Vega-Lite 5 (the
    oldest 5.x vl-convert has: 5.8; JupyterLab 4.x bundles 5.6.1) as with 6, so it means the
    same to JupyterLab's renderer. (Altair 6 ships no v5 schema; the gallery's specs also
    validate against Altair 5.5's, checked by hand when this was written.)"""
    import altair as alt
    import jsonschema
    import vl_convert as vlc

    from nnspec.output.convert import stable_ids, svg_size, vl_version

    validator = jsonschema.Draft7Validator(_altair_schema(alt))
    v5 = [v for v in vlc.get_vegalite_versions() if v.startswith("5.")][0]
    specs = {}
    for cell in saved_notebook.cells:
        for out in rich_outputs(cell) if cell.cell_type == "code" else []:
            if VEGALITE_MIME in out.data:
                specs[json.dumps(out.data[VEGALITE_MIME], sort_keys=True)] = out.data
    assert len(specs) == 6  # five views, and show's (the chart repeats the first view)
    for data in specs.values():
        spec = data[VEGALITE_MIME]
        assert "$schema" not in spec
        assert not list(validator.iter_errors(spec))
        new = stable_ids(vlc.vegalite_to_svg(spec, vl_version=vl_version()))
        assert stable_ids(vlc.vegalite_to_svg(spec, vl_version=v5)) == new, data["text/plain"]
        png = base64.b64decode(data["image/png"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == tuple(round(x) for x in svg_size(new))  # scale 1


def _altair_schema(alt) -> dict:
    from importlib import resources

    major = alt.SCHEMA_VERSION.lstrip("v").split(".")[0]
    ours = VEGALITE_MIME.split(".v")[1].split("+")[0]
    # the schema of the mimetype's version where Altair ships it (Altair 5), else Altair's own
    for version in dict.fromkeys((ours, major)):
        try:
            text = resources.files("altair").joinpath(f"vegalite/v{version}/schema/vega-lite-schema.json").read_text()
        except (FileNotFoundError, ModuleNotFoundError):
            continue
        return json.loads(text)
    raise AssertionError("Altair ships no Vega-Lite schema")


# -- without a kernel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quickstart():
    import nnspec

    return nnspec.render(os.path.join(ROOT, "specs", "quickstart.yaml"))


def test_a_view_chart_displays_offline_unless_the_user_chose_a_renderer(quickstart):
    import altair as alt

    chart = quickstart.views[0].chart
    assert isinstance(chart, alt.TopLevelMixin) and "_repr_mimebundle_" not in json.dumps(chart.to_dict())
    assert set(chart._repr_mimebundle_()) == {VEGALITE_MIME, "image/png", "text/plain"}
    with alt.renderers.enable("html"):  # the user's renderer is theirs to have
        shown = chart._repr_mimebundle_()
        assert "text/html" in (shown[0] if isinstance(shown, tuple) else shown)
    twin = copy.deepcopy(chart)
    assert twin._repr_mimebundle_.chart is twin
    back = pickle.loads(pickle.dumps(chart))
    assert back._repr_mimebundle_.chart is back and back.to_dict() == chart.to_dict()
    derived = chart.properties(width=100)  # a new Altair chart: Altair's display
    assert "_repr_mimebundle_" not in vars(derived)
    assert set(quickstart.views[1]._repr_mimebundle_()) == {VEGALITE_MIME, "image/png", "text/plain"}


def test_a_failed_view_is_its_error_as_text():
    from nnspec.output.dashboard import ViewResult
    from nnspec.output.notebook import view_bundle

    failed = ViewResult("Broken", "weights of nope", error="spec.yaml:3:5: error: unknown layer 'nope'")
    assert view_bundle(failed) == {"text/plain": "Broken: failed\nspec.yaml:3:5: error: unknown layer 'nope'"}


def test_the_header_escapes_markdown_and_lists_the_checks(quickstart):
    from types import SimpleNamespace

    from nnspec.output.notebook import header

    spec = SimpleNamespace(title="a_b <i>", name="x", description="")
    check = SimpleNamespace(passed=False, line=lambda: "FAIL  max(abs) < 1: fc1.weight 3.2")
    md = header(SimpleNamespace(spec=spec, views=quickstart.views, checks=[check]))["text/markdown"]
    assert md.startswith("### a\\_b &lt;i&gt;\n") and "5 views, checks 0/1 pass" in md
    assert "```text\nFAIL  max(abs) < 1: fc1.weight 3.2\n```" in md


def test_recompressing_keeps_every_pixel(quickstart):
    import vl_convert as vlc

    from nnspec.output.notebook import recompress

    png = vlc.vegalite_to_png(quickstart.views[2].vega_lite(), scale=1)
    smaller = recompress(png)
    assert len(smaller) < len(png)
    assert _pixels(smaller) == _pixels(png) and smaller[:33] == png[:33]  # the same header (IHDR)


def _pixels(png: bytes) -> bytes:
    pos, data = 8, b""
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body, crc = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + n], png[pos + 8 + n : pos + 12 + n]
        assert struct.unpack(">I", crc)[0] == zlib.crc32(kind + body)
        data += body if kind == b"IDAT" else b""
        pos += 12 + n
    return zlib.decompress(data)


def test_one_bundle_for_a_frontend_that_takes_one(quickstart):
    bundle = quickstart._repr_mimebundle_()  # IPython calls _ipython_display_ instead
    assert set(bundle) == {"text/plain", "image/png"} and bundle["text/plain"].startswith("nnspec dashboard")
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG") and struct.unpack(">I", png[20:24])[0] > 1000  # five views, stacked
