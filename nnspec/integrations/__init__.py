"""Callbacks for the frameworks people train with: ``lightning``, ``transformers``,
``keras``. Each module imports its framework; ``import nnspec`` imports none of them."""
