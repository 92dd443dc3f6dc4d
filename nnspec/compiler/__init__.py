"""nnspec.compiler."""
