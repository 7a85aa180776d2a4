"""edge-sdk: hybrid CNN/Transformer vision models, from PyTorch to phones.

`edge_sdk.models` (the zoo) and `edge_sdk.converters` live in the top-level folders `models/` and `converters/`
and are mapped into this package by pyproject.toml.
"""

__version__ = "0.1.0"
