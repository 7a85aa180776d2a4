"""The one list of zoo families: importing a family module registers its variants (registry order = this order).

Adding a family is one module plus one entry here. edge_sdk/models/__init__.py imports this file; the registry
(models/registry.py) never imports a family, so it stays a leaf and no import cycle runs through it.
"""
from . import mobilevit, mobilevitv2, levit, hybrid, efficientnet  # noqa: F401

FAMILIES = (mobilevit, mobilevitv2, levit, hybrid, efficientnet)
