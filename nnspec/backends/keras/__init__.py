"""The Keras 3 backend: a Keras model on whatever backend Keras runs (``KERAS_BACKEND``:
torch, jax; tensorflow through the same paths, untested) behind nnspec's backend
interface. Keras is imported only when a Keras model or file comes."""
