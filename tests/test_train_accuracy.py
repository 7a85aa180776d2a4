"""A tiny zoo model really learns the generated data on a CPU (end-to-end: synth -> train -> eval).

Measured (docs/training.md): levit_tiny on circle_stripes vs square_dots (either cue suffices), 300 train /
100 val images at 64x64, batch 16, lr 3e-3, reaches 63-66% val top-1 from epoch 3 on (chance: 50%). The run is
deterministic (fixed seeds, one thread); the bound leaves room for other CPUs' kernels.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from edge_sdk.cli import cli
from edge_sdk.data.synth import write_imagefolder


@pytest.mark.slow
def test_levit_tiny_learns_easy_synthetic_classes(tmp_path):
    torch.set_num_threads(1)
    for split, per_class, seed in (("train", 150, 0), ("val", 50, 1)):
        root = write_imagefolder(tmp_path / split, classes=4, per_class=per_class, seed=seed, size=64)
        for drop in ("circle_dots", "square_stripes"):  # keep the pair that differs in shape AND texture
            shutil.rmtree(root / drop)
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "levit_tiny", "--data", str(tmp_path / "train"), "--val",
                                   str(tmp_path / "val"), "--epochs", "5", "--batch-size", "16",
                                   "--set", "lr_base_batch=16", "--set", "lr=3e-3", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["val_top1"] >= 58.0, summary
    ev = CliRunner().invoke(cli, ["eval", str(out / "best.pt"), "--data", str(tmp_path / "val"), "--json"])
    assert ev.exit_code == 0 and json.loads(ev.output)["top1"] >= 58.0
