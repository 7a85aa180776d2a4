"""A few-step training run on generated data: a checkpoint for tests and demos in seconds.

`tiny_checkpoint(tmp_path)` is what other packages' tests use to get a real training checkpoint (e.g. to test
`edge-sdk convert --checkpoint`) without knowing the training API.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .engine import TrainJob, TrainResult, train
from .recipe import load_recipe


def synth_data(root: Path, classes: int = 4, per_class: int = 8, size: int = 32) -> tuple[Path, Path]:
    """Train (seed 0) and val (seed 1) ImageFolders under `root`, reused when they already exist."""
    from edge_sdk.data.synth import write_imagefolder
    train_dir, val_dir = Path(root) / "train", Path(root) / "val"
    if not train_dir.is_dir():
        write_imagefolder(train_dir, classes=classes, per_class=per_class, seed=0, size=size)
    if not val_dir.is_dir():
        write_imagefolder(val_dir, classes=classes, per_class=max(2, per_class // 4), seed=1, size=size)
    return train_dir, val_dir


def quick_train(out: Path, model: str = "levit_tiny", steps: int = 4, input_size: int = 32,
                data_root: Path | None = None, **recipe_overrides: Any) -> TrainResult:
    """Train `model` for `steps` steps (batch 8, cpu-tiny recipe) on synthetic data; returns the result."""
    out = Path(out)
    train_dir, val_dir = synth_data(data_root or out.parent / f"{out.name}-data", size=input_size)
    overrides = {"batch_size": 8, "epochs": 1, "input_size": input_size, "workers": 0, **recipe_overrides}
    recipe = load_recipe("cpu-tiny", overrides)
    return train(TrainJob(model, train_dir, out, recipe, val=val_dir, max_steps=steps, show_progress=False,
                          on_log=lambda m: None))


def tiny_checkpoint(tmp: Path, model: str = "levit_tiny", steps: int = 2, input_size: int = 32) -> Path:
    """Path to a `last.pt` from a short run: loads with `create_model(model, checkpoint=...)`/`model_from_checkpoint`."""
    return quick_train(Path(tmp) / f"ckpt-{model}", model=model, steps=steps, input_size=input_size).last
