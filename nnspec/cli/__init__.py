"""Stage 10 (top): the command line, a thin layer over the Python API.

``nnspec.cli:main`` is the console script; ``init`` writes starter specs and
``watch`` re-renders on changes."""

from nnspec.cli.main import main

__all__ = ["main"]
