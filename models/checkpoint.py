"""Weights files written by this project: safe to load (weights_only=True), self-describing, written atomically.

Only file I/O lives here (a leaf of the import graph); rebuilding a model from a checkpoint needs the zoo and is
`edge_sdk.models.model_from_checkpoint` (models/registry.py).

A checkpoint is a dict: `{"format": "edge-sdk", "model": {"name", "num_classes", "overrides"}, "state_dict": ...}`
plus, for training checkpoints, optimizer/scheduler/EMA state. A bare state dict is accepted too.
"""
from __future__ import annotations

import io
import re
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
    if path.stat().st_size == 0:
        raise EdgeError(f"cannot read checkpoint {path}: the file is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, random bytes
        raise EdgeError(f"cannot read checkpoint {path}: {_load_failure(exc)}") from exc
    if not isinstance(obj, dict):
        raise EdgeError(f"checkpoint {path} does not hold a state dict")
    return obj


def _load_failure(exc: Exception) -> str:
    """Why weights-only loading refused a file, in one line that keeps the reason (torch's message is a page).

    A refused GLOBAL means the pickle asks to import and call Python code: say which one, and that it may run code.
    """
    text = str(exc)
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return (f"it needs the Python global {refused.group(1)}, which weights-only loading refuses: unpickling this "
                "file may run code. Load it only if you trust its source (and re-save its state_dict)")
    if "Weights only load failed" in text:
        detail = [ln.strip() for ln in text.splitlines()[1:] if ln.strip() and "torch.load" not in ln
                  and "weights_only" not in ln]
        return f"weights-only unpickling refused it: {detail[0] if detail else 'unsupported content'}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first} (truncated or not a PyTorch checkpoint?)"


def state_dict_of(ckpt: dict[str, Any], prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The model weights in a checkpoint (EMA weights first when present: they are the ones evaluated)."""
    for key in (("ema", "state_dict", "model_state") if prefer_ema else ("state_dict", "model_state")):
        if isinstance(ckpt.get(key), dict):
            state = ckpt[key]
            bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
            if bad:
                raise EdgeError(f"checkpoint '{key}' holds entries that are not named tensors: {_short(bad[:3])}")
            return state
    if ckpt and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt.items()):
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
