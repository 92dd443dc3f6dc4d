"""Very tall charts export with every label drawn, and the fonts behind it: vl-convert's
fonts loaded without the installed faces that shadow its in-memory Liberation Sans
(``fonts.prime_fonts``), the process environment left as it was, and a worker whose
fonts differ from this process's leaving its views to this process."""

from __future__ import annotations

import os
import re
import sys
import time
from collections import OrderedDict

import pytest
import torch

import nnspec
from nnspec.output import convert, fonts, write
from tests.helpers import spec

BLOCKS = 100  # a weight and a bias each: 200 bars, the chart lies down and grows tall
TEXT = re.compile(r"<text\b[^>]*>([^<]*)</text>")


def _tall_dash():
    torch.manual_seed(0)
    blocks = OrderedDict(
        (f"block{i}", torch.nn.Sequential(OrderedDict(downsample=torch.nn.Linear(2, 2)))) for i in range(BLOCKS)
    )
    model = torch.nn.Sequential(blocks)
    return nnspec.render(spec([{"title": "norms", "query": "params of * | norm | bar"}], loss=None), model=model), model


def test_a_tall_charts_svg_and_png_keep_every_label(tmp_path):
    dash, model = _tall_dash()
    names = [n for n, _ in model.named_parameters()]
    written = write.write_outputs(dash, str(tmp_path), ("svg", "png"))
    svg_path = next(p for p in written if p.endswith(".svg"))
    texts = TEXT.findall(open(svg_path, encoding="utf-8").read())
    assert [t for t in texts if t.startswith("block")] == names  # all of them, whole, in order
    png_path = next(p for p in written if p.endswith(".png"))
    with open(png_path, "rb") as f:
        head = f.read(24)
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    svg_w, svg_h = convert.svg_size(open(svg_path, encoding="utf-8").read())
    assert (width, height) == (round(svg_w * convert.PNG_SCALE), round(svg_h * convert.PNG_SCALE))
    assert height > 10 * width / 2  # tall: one row per parameter


def _fonts(tmp_path, names):
    folder = tmp_path / "fonts"
    folder.mkdir()
    for n in names:
        (folder / n).write_bytes(b"")
    return str(folder)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fontconfig files are read on Linux")
def test_the_font_config_leaves_out_only_the_shadowing_faces(tmp_path, monkeypatch):
    folder = _fonts(tmp_path, ["LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "arial.ttf", "DejaVuSans.ttf"])
    monkeypatch.setattr(fonts, "FONT_DIRS", (folder,))
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FONTCONFIG_FILE", raising=False)
    conf = fonts.font_config()
    assert conf is not None and conf == fonts.font_config()  # made once, then found
    links = re.search(r"<dir>([^<]+)</dir>", open(conf, encoding="utf-8").read()).group(1)
    kept = [os.path.realpath(os.path.join(links, n)) for n in os.listdir(links)]
    assert kept == [os.path.realpath(os.path.join(folder, "DejaVuSans.ttf"))]


def test_no_font_config_where_nothing_shadows_or_the_user_chose(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fonts, "FONT_DIRS", (_fonts(tmp_path, ["DejaVuSans.ttf"]),))
    monkeypatch.delenv("FONTCONFIG_FILE", raising=False)
    assert fonts.font_config() is None  # nothing shadows vl-convert's Liberation Sans
    monkeypatch.setattr(fonts, "FONT_DIRS", (str(tmp_path / "fonts"), "/usr/share/fonts"))
    monkeypatch.setenv("FONTCONFIG_FILE", "/etc/fonts/fonts.conf")
    assert fonts.font_config() is None  # the user's choice stands


def test_priming_leaves_the_environment_as_it_was(monkeypatch):
    first = fonts.prime_fonts()
    monkeypatch.setattr(fonts, "_FONTS", [])
    monkeypatch.delenv("FONTCONFIG_FILE", raising=False)
    assert fonts.prime_fonts() == first  # the engine's fonts are loaded once per process
    assert "FONTCONFIG_FILE" not in os.environ


@pytest.mark.skipif(convert.cores() < 2, reason="one core: exports are drawn in process")
def test_workers_with_other_fonts_leave_their_views_here(tmp_path, monkeypatch):
    dash, _ = _tall_dash()
    specs = [dash.views[0].vega_lite()] * convert.POOL_MIN_VIEWS
    drawn_here, sent = [], []
    real_send = convert._Worker.send

    def draw(s, fmt):
        drawn_here.append(fmt)
        time.sleep(0.5)  # slowly: the workers start (and say their fonts) meanwhile
        return convert.convert(s, fmt)

    monkeypatch.setattr(convert._Worker, "send", lambda self, job: sent.append(job) or real_send(self, job))
    pool = convert.ExportPool(2, draw)
    pool.fonts = "fonts of another process"
    for s in specs:
        pool.submit(s, ["svg"])
    outcomes = pool.results()
    pool.close()
    assert drawn_here == ["svg"] * len(specs) and sent == []  # every view drawn by this process, once
    assert [o[0][:2] for o in outcomes] == [("ok", "svg")] * len(specs)
