"""Weights files written by this project: safe to load (weights_only=True), self-describing, written atomically.

A checkpoint is a dict: `{"format": "edge-sdk", "model": {"name", "num_classes", "overrides"}, "state_dict": ...}`
plus, for training checkpoints, optimizer/scheduler/EMA state. A bare state dict is accepted too.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_sdk.errors import EdgeError, UsageError

FORMAT = "edge-sdk"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save through `edge_sdk.bundle.atomic_write` (temp file, fsync, rename): a crash never leaves half a
    checkpoint, and an existing one stays intact until the new one is complete."""
    from edge_sdk.bundle import atomic_write
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with weights-only unpickling; a clear EdgeError when missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, random bytes
        raise EdgeError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
    if not isinstance(obj, dict):
        raise EdgeError(f"checkpoint {path} does not hold a state dict")
    return obj


def state_dict_of(ckpt: dict[str, Any], prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The model weights in a checkpoint (EMA weights first when present: they are the ones evaluated)."""
    for key in (("ema", "state_dict", "model_state") if prefer_ema else ("state_dict", "model_state")):
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise EdgeError("checkpoint holds no model weights (no 'state_dict')")


def model_meta(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """`{"name", "num_classes", "overrides"}` when the checkpoint was written by edge-sdk."""
    meta = ckpt.get("model")
    return meta if ckpt.get("format") == FORMAT and isinstance(meta, dict) else None


def load_weights(model: nn.Module, path: str | Path, prefer_ema: bool = True) -> nn.Module:
    """Load weights into `model`; mismatched keys or shapes mean the checkpoint is from another model."""
    ckpt = read_checkpoint(path)
    meta = model_meta(ckpt)
    name = getattr(model, "name", "")
    if meta and name and meta.get("name") != name:
        raise UsageError(f"checkpoint {path} is for model '{meta.get('name')}', not '{name}'")
    state = state_dict_of(ckpt, prefer_ema)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or shapes:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", extra), ("shape", shapes)) if keys)
        raise UsageError(f"checkpoint {path} does not fit model '{name or type(model).__name__}' ({detail})")
    model.load_state_dict(state)
    return model


def save_weights(model: nn.Module, path: str | Path, overrides: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write a self-describing weights file that `create_model(..., checkpoint=path)` and `convert` accept."""
    ckpt = {"format": FORMAT,
            "model": {"name": getattr(model, "name", ""), "num_classes": getattr(model, "num_classes", None),
                      "overrides": dict(overrides or {})},
            "state_dict": model.state_dict()}
    ckpt.update(extra or {})
    return atomic_torch_save(ckpt, path)


def model_from_checkpoint(path: str | Path, **overrides: Any) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (for `edge-sdk convert CHECKPOINT`)."""
    from .registry import create_model
    meta = model_meta(read_checkpoint(path))
    if meta is None:
        raise UsageError(f"{path} is not an edge-sdk checkpoint (no model name inside); "
                         "pass the model name and --checkpoint instead")
    kw = {**meta.get("overrides", {}), **overrides}
    return create_model(meta["name"], num_classes=meta["num_classes"], checkpoint=path, **kw)
