"""Training checkpoints: the models/checkpoint.py format plus everything needed to resume bit-exactly.

Layout (all loadable with `torch.load(weights_only=True)`: only tensors, numbers, strings, lists and dicts):
  format, model {name, num_classes, overrides}, state_dict          <- what `create_model(checkpoint=)` and
  ema, ema_updates                                                     `edge-sdk convert --checkpoint` read
  optimizer, scaler, train {epoch, step_in_epoch, best_top1, recipe, classes, world_size}, rng [per rank]
RNG states are stored per rank as plain lists/tensors (python's Mersenne state as a list of ints, numpy's as a
tensor) so no arbitrary object is ever unpickled.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_sdk.errors import UsageError
from edge_sdk.models.checkpoint import FORMAT, atomic_torch_save, model_meta, read_checkpoint


def rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"python": [version, list(mt), gauss], "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                       "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_checkpoint(model_meta_: dict[str, Any], state_dict: dict[str, torch.Tensor], **extra: Any) -> dict:
    return {"format": FORMAT, "model": model_meta_, "state_dict": state_dict, **extra}


def save(ckpt: dict[str, Any], path: Path) -> Path:
    return atomic_torch_save(ckpt, path)


def load_for_resume(path: Path, model_name: str) -> dict[str, Any]:
    """Read a training checkpoint; a UsageError if it has no training state or belongs to another model."""
    ckpt = read_checkpoint(path)
    meta = model_meta(ckpt)
    if meta is None or "train" not in ckpt:
        raise UsageError(f"{path} is not an edge-sdk training checkpoint (no training state to resume)")
    if meta.get("name") != model_name:
        raise UsageError(f"checkpoint {path} is for model '{meta.get('name')}', not '{model_name}'")
    return ckpt
