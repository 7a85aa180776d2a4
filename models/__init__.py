"""The edge-friendly hybrid model zoo (imported as `edge_sdk.models`).

The one place the zoo is gathered: importing `families` (the explicit list of family modules) fills the registry,
which itself imports no family (no import cycle; see models/registry.py).
"""
from . import families  # noqa: F401  (registers every family's variants, in FAMILIES order)
from .base import DeployConfig, EdgeModel
from .checkpoint import load_weights, save_weights
from .profile import count_macs, count_params, stage_shapes
from .registry import ModelEntry, create_model, get_entry, list_models, model_from_checkpoint, register
from .reparam import reparameterize_model

__all__ = ["DeployConfig", "EdgeModel", "ModelEntry", "create_model", "get_entry", "list_models", "register",
           "reparameterize_model", "load_weights", "save_weights", "model_from_checkpoint",
           "count_params", "count_macs", "stage_shapes"]
