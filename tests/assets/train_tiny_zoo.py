"""Train every tiny zoo variant briefly on generated data and save small fp16 weights files for the tests.

Why: quantization parity is only meaningful on weights that make decisions. Random-weight tiny models have
nearly tied logits and activation ranges no trained model has, so int8 parity on them measures noise. These
files (~100-180 kB each) are trained on `edge_sdk.data.synth` (10 shape x texture classes, 64x64), so tests
convert models whose top-1 is decisive on real images, at no training cost per test run.

Regenerate after a change to a tiny model's parameters (a test fails with "does not fit model"):

    .venv/bin/python tests/assets/train_tiny_zoo.py            # all tiny models, ~1-2 min each on 2 cores
    .venv/bin/python tests/assets/train_tiny_zoo.py levit_tiny # one
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TINY = ("levit_tiny", "mobilevit_tiny", "mobilevitv2_tiny", "pbhybrid_micro", "cctt_micro")
CLASSES, PER_CLASS, SIZE, EPOCHS = 10, 100, 64, 30


def weights_path(name: str) -> Path:
    """Where the trained weights of tiny model `name` are shipped."""
    return HERE / "tiny" / f"{name}.pt"


def train_one(name: str, work: Path) -> dict:
    from edge_sdk.data.synth import write_imagefolder
    from edge_sdk.models import model_from_checkpoint
    from edge_sdk.models.checkpoint import save_weights
    from edge_sdk.train.engine import TrainJob, train
    from edge_sdk.train.recipe import load_recipe

    train_dir, val_dir = work / "train", work / "val"
    if not train_dir.is_dir():
        write_imagefolder(train_dir, classes=CLASSES, per_class=PER_CLASS, seed=0, size=SIZE)
        write_imagefolder(val_dir, classes=CLASSES, per_class=10, seed=1, size=SIZE)
    recipe = load_recipe("cpu-tiny", {"epochs": EPOCHS, "input_size": SIZE, "batch_size": 32})
    t0 = time.perf_counter()
    result = train(TrainJob(name, train_dir, work / name, recipe, val=val_dir, show_progress=False,
                            on_log=lambda m: None))
    model = model_from_checkpoint(result.best or result.last).eval()
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_weights(model, weights_path(name), extra={"state_dict": half})
    return {"val_top1": round(float(result.metrics.get("val_top1", 0.0)), 4), "epochs": EPOCHS,
            "train_images": CLASSES * PER_CLASS, "seconds": round(time.perf_counter() - t0, 1)}


def main(names: list[str]) -> None:
    torch.set_num_threads(1)  # deterministic speed on a shared machine (2 threads thrash under load)
    info_path = HERE / "tiny" / "trained.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or TINY:
            info[name] = train_one(name, Path(tmp))
            print(name, info[name], flush=True)
            info_path.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
