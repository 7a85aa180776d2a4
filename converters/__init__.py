"""Converters from zoo models to deployable bundles (imported as `edge_sdk.converters`; needs the [convert] extra).

`targets.py` lists the targets, `base.py` is the contract each one implements, `pipeline.py` runs a conversion.
"""
from .base import Artifact, ConvertOptions, Target
from .targets import TARGET_MODULES, get_target, load_targets

__all__ = ["TARGET_MODULES", "Artifact", "ConvertOptions", "Target", "get_target", "load_targets"]
