"""nnspec.spec."""
