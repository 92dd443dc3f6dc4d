"""Weights-only files (safetensors, a sharded safetensors index, a torch state_dict):
a checkpoint without its code, read lazily behind the backend interface."""
