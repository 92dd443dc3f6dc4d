"""docs/notebook.ipynb executed headlessly (nbclient): inline, offline dashboards and a PNG fallback."""

from __future__ import annotations

import base64
import os

import pytest

from tests.conftest import ROOT

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")


def test_the_notebook_runs_and_shows_dashboards_inline():
    path = os.path.join(ROOT, "docs", "notebook.ipynb")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}
    )
    client.execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for i in (0, 2):  # the rendered dashboard and the one-line nnspec.show
        (out,) = [o for o in cells[i].outputs if o.output_type == "execute_result"]
        page = out.data["text/html"]
        assert page.startswith("<iframe srcdoc=") and "vegaEmbed" in page
        assert "src=&quot;http" not in page and "https://cdn" not in page  # one inline bundle, no network
        png = base64.b64decode(out.data["image/png"])
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        assert out.data["text/plain"].startswith("nnspec dashboard")
    printed = "".join(o.get("text", "") for o in cells[1].outputs)
    assert printed.startswith("altair (")
