"""nnspec.inputs."""
