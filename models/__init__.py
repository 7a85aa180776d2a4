"""The edge-friendly hybrid model zoo (imported as `edge_sdk.models`)."""
from .base import DeployConfig, EdgeModel
from .checkpoint import load_weights, model_from_checkpoint, save_weights
from .profile import count_macs, count_params, stage_shapes
from .registry import ModelEntry, create_model, get_entry, list_models, register
from .reparam import reparameterize_model

__all__ = ["DeployConfig", "EdgeModel", "ModelEntry", "create_model", "get_entry", "list_models", "register",
           "reparameterize_model", "load_weights", "save_weights", "model_from_checkpoint",
           "count_params", "count_macs", "stage_shapes"]
