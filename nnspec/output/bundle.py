"""The Vega + Vega-Lite + vega-embed JavaScript, bundled once by vl-convert
and cached on disk (``$NNSPEC_CACHE`` or ``~/.cache/nnspec``)."""

from __future__ import annotations

import hashlib
import os

from nnspec.output.files import write_atomic


def cache_dir() -> str:
    base = os.environ.get("NNSPEC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nnspec"
    )
    return base


def bundle_path(vl_version: str) -> str:
    import vl_convert as vlc

    versions = f"{vlc.__version__}-{vl_version}-{vlc.get_vega_version()}-{vlc.get_vega_embed_version()}"
    digest = hashlib.sha256(versions.encode()).hexdigest()[:12]
    return os.path.join(cache_dir(), f"vega-bundle-{digest}.js")


def javascript_bundle(vl_version: str) -> str:
    """The bundle for this Vega-Lite version, built on first use only."""
    path = bundle_path(vl_version)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        pass
    import vl_convert as vlc

    js = vlc.javascript_bundle(vl_version=vl_version)
    try:
        write_atomic(path, js)
    except OSError:
        pass  # a read-only home still renders, it just rebuilds next time
    return js
