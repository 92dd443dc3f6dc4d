"""nnspec.query."""
