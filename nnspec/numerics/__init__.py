"""nnspec.numerics."""
