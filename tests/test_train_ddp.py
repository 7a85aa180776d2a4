"""Distributed training: `torchrun --nproc_per_node 2` with gloo on CPU keeps both ranks' weights identical."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_sdk.models import model_from_checkpoint
from edge_sdk.models.checkpoint import read_checkpoint
from edge_sdk.train.quick import synth_data

TORCHRUN = Path(sys.executable).with_name("torchrun")

RANK_SCRIPT = """
import hashlib, json, os, sys, torch
torch.set_num_threads(1)
from pathlib import Path
from edge_sdk.train import dist
from edge_sdk.train.engine import TrainJob, Trainer
from edge_sdk.train.recipe import load_recipe
data, out = Path(sys.argv[1]), Path(sys.argv[2])
recipe = load_recipe("cpu-tiny", {"batch_size": 4, "epochs": 2, "input_size": 32, "workers": 0, "lr": 1e-3,
                                  "lr_base_batch": 4, "randaug_n": 1})
t = Trainer(TrainJob("levit_tiny", data / "train", out, recipe, val=data / "val", max_steps=5,
                     show_progress=False))
t.run()
h = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in t.model.state_dict().values()))
(out / f"rank{t.info.rank}.json").write_text(json.dumps({"hash": h.hexdigest(), "world": t.info.world_size,
                                                         "peak_lr": t.schedule.peak, "steps": t.steps_per_epoch}))
dist.cleanup(t.info)
"""


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    if not TORCHRUN.is_file():
        pytest.skip("torchrun not installed next to this Python")
    data = tmp_path / "data"
    synth_data(data, classes=4, per_class=8, size=32)
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), str(data), str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{i}.json").read_text()) for i in range(2))
    assert r0["hash"] == r1["hash"]  # DDP all-reduced gradients: replicas never diverge
    assert r0["world"] == 2
    assert r0["steps"] == 4  # 32 images / (2 ranks x 4) per step
    assert r0["peak_lr"] == pytest.approx(1e-3 * 8 / 4)  # lr scaled by global batch / base batch
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["train"]["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert ckpt["train"]["epoch"] == 1 and ckpt["train"]["step_in_epoch"] == 1  # stopped at global step 5
    model = model_from_checkpoint(out / "last.pt")
    assert model.num_classes == 4
    assert "stopped at --max-steps 5" in proc.stdout  # rank 0 logs, once
    assert proc.stdout.count("training levit_tiny") == 1
