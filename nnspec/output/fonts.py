"""vl-convert's fonts, loaded once per process (``prime_fonts``).

vl-convert measures every piece of text by laying it
out in its font database, and reads a font installed as a file afresh (open,
map, unmap) for each glyph it looks at; its own copy of Liberation Sans, the
face it draws ``sans-serif`` with, lives in memory but loses to an installed
Liberation Sans (or Arial, Helvetica) of the same name. A chart with 400 axis
labels took seconds for that alone (about 0.1 ms per character, per measure).
So on Linux the engine's fonts are loaded from a fontconfig file of our own that
lists every installed font except those faces: the same family and widths (the
SVG is the same bytes; a PNG's anti-aliasing may differ where the installed
copy is another version), read from memory. A worker whose fonts draw a probe
differently from this process's leaves its views to this process, so that the
files stay the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys

# Installed faces that vl-convert would pick for ``sans-serif`` over the copy of Liberation Sans
# it holds in memory (its order of preference: Arial, Helvetica, Liberation Sans).
SHADOWING_FONTS = re.compile(
    r"^(liberationsans-(regular|bold|italic|bolditalic)|arial(bd|bi|i)?|arial[- ]?(bold|italic|bolditalic)"
    r"|helvetica([- ]?(bold|oblique|boldoblique))?)\.(ttf|otf)$",
    re.IGNORECASE,
)
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
# the folders Linux keeps fonts in (fontconfig's defaults; fontdb's own where it finds no fontconfig)
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts")
_PROBE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="16">'
    '<text x="2" y="12" font-family="sans-serif" font-size="11">Ag0.,</text></svg>'
)
_FONTS: list[str] = []  # this process's font fingerprint, once its engine's fonts are loaded


def system_font_files() -> list[str]:
    """Every font file in the folders fontdb reads on Linux, sorted."""
    found = []
    for top in FONT_DIRS:
        for folder, _, names in os.walk(os.path.expanduser(top), followlinks=True):
            found += [os.path.join(folder, n) for n in names if n.lower().endswith(FONT_SUFFIXES)]
    return sorted(found)


def font_config() -> str | None:
    """A fontconfig file naming a folder of links to every installed font but the faces that
    shadow vl-convert's own Liberation Sans (``SHADOWING_FONTS``), kept in nnspec's cache;
    None where there is nothing to gain or it cannot be made: not Linux, ``FONTCONFIG_FILE``
    already chosen by the user, no shadowing face installed, a cache that cannot be written."""
    if not sys.platform.startswith("linux") or "FONTCONFIG_FILE" in os.environ:
        return None
    files = system_font_files()
    keep = [f for f in files if not SHADOWING_FONTS.match(os.path.basename(f))]
    if len(keep) == len(files):
        return None
    from nnspec.output.bundle import cache_dir

    digest = hashlib.sha256("\n".join(keep).encode()).hexdigest()[:12]
    folder = os.path.join(cache_dir(), f"fonts-{digest}")
    conf = os.path.join(folder, "fonts.conf")
    if not os.path.exists(conf):
        try:
            _write_font_config(folder, conf, keep)
        except OSError:
            return None
    return conf


def _write_font_config(folder: str, conf: str, fonts: list[str]) -> None:
    """``folder``/links: a link to each of ``fonts``; ``conf``: a fontconfig file naming that folder
    (written last, atomically: a folder with its file is complete)."""
    from nnspec.output.files import write_atomic

    links = os.path.join(folder, "links")
    os.makedirs(links, exist_ok=True)
    for i, path in enumerate(fonts):
        link = os.path.join(links, f"{i:05d}-{os.path.basename(path)}")
        try:
            os.symlink(path, link)
        except FileExistsError:  # made before, or by a worker starting beside this process
            pass
    dir_xml = links.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    write_atomic(conf, f'<?xml version="1.0"?>\n<fontconfig>\n  <dir>{dir_xml}</dir>\n</fontconfig>\n')


def prime_fonts() -> str:
    """Load vl-convert's font database now (once per process), from ``font_config()`` where it
    gives one, and return a fingerprint of the fonts it holds: a probe's PNG, hashed. The
    variable is set only while the database loads: nothing else in this process, and no
    process it starts, sees it. A database already loaded (vl-convert used before in this
    process) stays as it is; the fingerprint says so."""
    if _FONTS:
        return _FONTS[0]
    import vl_convert as vlc

    conf = font_config()
    before = os.environ.get("FONTCONFIG_FILE")
    if conf:
        os.environ["FONTCONFIG_FILE"] = conf
    try:
        png = vlc.svg_to_png(_PROBE_SVG, scale=1)
        vlc.svg_to_pdf(_PROBE_SVG)  # the PDF writer's fonts too
    finally:
        if conf and before is None:
            os.environ.pop("FONTCONFIG_FILE", None)
        elif conf and before is not None:
            os.environ["FONTCONFIG_FILE"] = before
    _FONTS.append(hashlib.sha256(png).hexdigest())
    return _FONTS[0]
