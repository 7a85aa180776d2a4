"""Converters from zoo models to deployable bundles (imported as `edge_sdk.converters`)."""
from .base import TARGETS, Artifact, ConvertOptions, Target, get_target, load_targets, register_target

__all__ = ["TARGETS", "Artifact", "ConvertOptions", "Target", "get_target", "load_targets", "register_target"]
