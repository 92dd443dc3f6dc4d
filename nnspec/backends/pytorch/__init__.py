"""nnspec.backends.torch."""
