"""Every spec example in README.md and docs/ renders (and its views succeed)."""

from __future__ import annotations

import glob
import os
import re
import shutil

import pytest

import nnspec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _examples():
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, flags=re.S)):
            if "nnspec: 1" in block:
                yield pytest.param(block, id=f"{os.path.basename(path)}-{i}")


@pytest.mark.parametrize("block", list(_examples()))
def test_doc_spec_renders(block, tmp_path):
    shutil.copy(os.path.join(ROOT, "specs", "quickstart.pt"), tmp_path)  # examples may name it
    spec = tmp_path / "spec.yaml"
    spec.write_text(block)
    dash = nnspec.render(str(spec), out=str(tmp_path / "out"))
    assert dash.ok, [v.error for v in dash.views]


def test_there_are_examples():
    assert len(list(_examples())) >= 2


def test_gallery_entries_render():
    import sys

    sys.path.insert(0, os.path.join(ROOT, "docs"))
    import gallery

    for title, spec_name, query in gallery.ENTRIES:
        v = gallery.render_entry(spec_name, query, title)
        assert v.error is None, (title, v.error)
        assert os.path.exists(os.path.join(ROOT, "docs", "gallery", f"{gallery.slug(title)}.png")), title
