"""nnspec.capture."""
