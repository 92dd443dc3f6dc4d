"""nnspec.execute."""
