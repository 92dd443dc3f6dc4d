"""nnspec.runs."""
