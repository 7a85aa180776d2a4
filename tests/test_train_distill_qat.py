"""Distillation (DeiT/LeViT style), layer-wise lr groups, schedule, and PT2E quantization-aware training."""
from __future__ import annotations

import math

import pytest
import torch

from edge_sdk.errors import UsageError
from edge_sdk.models import create_model
from edge_sdk.models import model_from_checkpoint
from edge_sdk.models.checkpoint import read_checkpoint
from edge_sdk.train.distill import distill_loss, total_loss
from edge_sdk.train.engine import TrainJob, train
from edge_sdk.train.optim import CosineSchedule, make_optimizer
from edge_sdk.train.quick import quick_train, synth_data
from edge_sdk.train.recipe import load_recipe


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    res = quick_train(root / "teacher", steps=2, data_root=root / "data")
    return res.last, synth_data(root / "data", size=32)


def test_distill_losses():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    assert distill_loss(s, t, "hard", 1.0) == pytest.approx(torch.nn.functional.cross_entropy(s, t.argmax(1)).item())
    assert distill_loss(t, t, "soft", 2.0).item() == pytest.approx(0.0, abs=1e-6)
    target = torch.full((4, 5), 0.2)
    # LeViT: class head on labels, distillation head on the teacher, weighted by alpha
    loss = total_loss((s, t), target, t, "hard", 0.5, 1.0)
    ce = -(target * torch.log_softmax(s, -1)).sum(-1).mean()
    assert loss.item() == pytest.approx(0.5 * ce.item() + 0.5 * distill_loss(t, t, "hard", 1.0).item(), rel=1e-5)


def test_layerwise_lr_groups_and_schedule():
    model = create_model("levit_tiny", num_classes=4)
    opt = make_optimizer(model, 1e-3, 0.05, (0.9, 0.999), conv_lr_scale=1.0, attn_lr_scale=0.5)
    kinds = {(g["kind"], g["weight_decay"] > 0): g["lr"] for g in opt.param_groups}
    assert kinds[("attn", True)] == pytest.approx(5e-4) and kinds[("conv", True)] == pytest.approx(1e-3)
    n_attn = sum(p.numel() for g in opt.param_groups if g["kind"] == "attn" for p in g["params"])
    assert 0 < n_attn < sum(p.numel() for p in model.parameters())
    sched = CosineSchedule(peak=1.0, min_lr=0.1, warmup_lr=0.0, warmup=10, total=110)
    assert sched(0) == 0.0 and sched(5) == pytest.approx(0.5) and sched(10) == pytest.approx(1.0)
    assert sched(60) == pytest.approx(0.55) and sched(110) == pytest.approx(0.1)
    assert math.isclose(sched(1000), 0.1)


def test_train_with_hard_distillation(tmp_path, teacher):
    ckpt, (train_dir, val_dir) = teacher
    recipe = load_recipe("levit", {"batch_size": 8, "epochs": 1, "input_size": 32, "workers": 0, "amp": "none"})
    res = train(TrainJob("levit_tiny", train_dir, tmp_path / "student", recipe, val=val_dir, teacher=str(ckpt),
                         max_steps=2, show_progress=False, on_log=lambda m: None))
    student = model_from_checkpoint(res.last)
    assert student.head_dist is not None and not student.distilled_training  # inference averages both heads
    with pytest.raises(UsageError, match="no --teacher"):
        train(TrainJob("levit_tiny", train_dir, tmp_path / "s2", recipe, show_progress=False))
    with pytest.raises(UsageError, match="neither a checkpoint"):
        train(TrainJob("levit_tiny", train_dir, tmp_path / "s3", recipe, teacher="nope.pt", show_progress=False))


@pytest.mark.slow
def test_qat_finetune_saves_loadable_float_weights(tmp_path, teacher):
    ckpt, (train_dir, val_dir) = teacher
    recipe = load_recipe("cpu-tiny", {"batch_size": 8, "epochs": 1, "input_size": 32, "workers": 0})
    res = train(TrainJob("levit_tiny", train_dir, tmp_path / "qat", recipe, val=val_dir, init=ckpt, qat=True,
                         max_steps=2, show_progress=False, on_log=lambda m: None))
    saved = read_checkpoint(res.last)
    assert saved["train"]["qat"] is True and "ema" not in saved
    assert any("activation_post_process" in k for k in saved["qat_state_dict"])  # fake-quant observers trained
    model = model_from_checkpoint(res.last)  # plain eager weights: what the int8 converter recalibrates
    start = read_checkpoint(ckpt)["ema"]
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert changed  # fine-tuning moved the weights
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(2, 3, 32, 32))).all()
