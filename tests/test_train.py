"""Training engine: exact resume, checkpoints that load, recipes, CLI train/eval and bad input."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from edge_sdk.cli import cli
from edge_sdk.errors import UsageError
from edge_sdk.models import create_model
from edge_sdk.models import model_from_checkpoint
from edge_sdk.models.checkpoint import read_checkpoint
from edge_sdk.train.quick import quick_train, synth_data
from edge_sdk.train.recipe import list_recipes, load_recipe, parse_set


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic CPU kernels and fair sharing of the 2 cores
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_data(tmp_path_factory.mktemp("synth"), classes=4, per_class=8, size=32)


def _weights(path):
    ckpt = read_checkpoint(path)
    return ckpt["state_dict"], ckpt.get("ema")


# Augmentation, mixup/cutmix and EMA on: everything random must come back identically after a resume.
AUG = {"randaug_n": 2, "mixup": 0.8, "cutmix": 1.0, "mix_prob": 1.0, "epochs": 2}


def test_resume_mid_epoch_is_bit_identical(tmp_path, data):
    root = data[0].parent
    full = quick_train(tmp_path / "full", steps=0, data_root=root, **AUG)
    assert full.global_step == 8 and full.epochs_done == 2
    part = quick_train(tmp_path / "part", steps=3, data_root=root, **AUG)  # stops inside epoch 1
    assert part.global_step == 3 and read_checkpoint(part.last)["train"]["step_in_epoch"] == 3
    from edge_sdk.train.engine import TrainJob, train
    recipe = load_recipe("cpu-tiny", {"batch_size": 8, "input_size": 32, "workers": 0, **AUG})
    resumed = train(TrainJob("levit_tiny", data[0], tmp_path / "part", recipe, val=data[1], resume=True,
                             show_progress=False, on_log=lambda m: None))
    assert resumed.global_step == 8
    (a, ema_a), (b, ema_b) = _weights(full.last), _weights(resumed.last)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k in ema_a:
        assert torch.equal(ema_a[k], ema_b[k]), k
    assert (tmp_path / "full" / "best.pt").is_file()
    log = (tmp_path / "full" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,lr,train_loss") and len(log) == 3


def test_checkpoint_loads_with_create_model(tmp_path, data):
    res = quick_train(tmp_path / "run", steps=2, data_root=data[0].parent)
    ckpt = torch.load(res.last, map_location="cpu", weights_only=True)  # weights-only unpickling works
    assert ckpt["format"] == "edge-sdk" and ckpt["model"]["name"] == "levit_tiny"
    model = model_from_checkpoint(res.last)
    assert model.num_classes == 4 and model.deploy.input_size == 32
    assert list(model.deploy.labels) == sorted(["circle_stripes", "circle_dots", "square_stripes", "square_dots"])
    same = create_model("levit_tiny", num_classes=4, input_size=32, checkpoint=res.last)
    for k, v in ckpt["ema"].items():  # EMA weights are the ones loaded (and converted)
        assert torch.equal(same.state_dict()[k], v)
    with pytest.raises(UsageError, match="levit_tiny"):
        create_model("mobilevitv2_tiny", num_classes=4, checkpoint=res.last)


def test_recipes_and_overrides(tmp_path):
    assert {"cpu-tiny", "mobilevit", "mobilevitv2", "levit", "hybrid"} <= set(list_recipes())
    r = load_recipe("mobilevit")
    assert (r.epochs, r.lr, r.min_lr, r.warmup_steps, r.weight_decay, r.label_smoothing, r.ema) == \
           (300, 2e-3, 2e-4, 3000, 0.01, 0.1, True)
    assert r.lr_base_batch == 1024
    lv = load_recipe("levit")
    assert (lv.epochs, lv.lr, lv.lr_base_batch, lv.weight_decay, lv.distill) == (1000, 5e-4, 512, 0.025, "hard")
    r = load_recipe("levit", parse_set(["epochs=3", "lr=1e-3", "amp=none"]))
    assert (r.epochs, r.lr, r.amp) == (3, 1e-3, "none")
    with pytest.raises(UsageError, match="epochz"):
        load_recipe("cpu-tiny", {"epochz": 3})
    with pytest.raises(UsageError, match="amp"):
        load_recipe("cpu-tiny", {"amp": "fp8"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nweight_decy: 0.1\n")
    with pytest.raises(UsageError, match="weight_decy"):
        load_recipe(str(bad))
    with pytest.raises(UsageError, match="unknown recipe"):
        load_recipe("mobilevit3")


def _run(args):
    return CliRunner().invoke(cli, args)


def test_cli_train_eval_and_bad_input(tmp_path, data):
    train_dir, val_dir = data
    out = tmp_path / "run"
    base = ["train", "levit_tiny", "--data", str(train_dir), "--val", str(val_dir), "--out", str(out),
            "--batch-size", "8", "--set", "input_size=32", "--no-progress"]
    res = _run(base + ["--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["global_step"] == 4 and summary["epochs_done"] == 1 and "val_top1" in summary
    res = _run(["eval", str(out / "last.pt"), "--data", str(val_dir), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    assert m["images"] == 8 and 0 <= m["top1"] <= m["top5"] <= 100 and m["loss"] > 0

    # bad input: clear message, non-zero exit, no traceback
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["train", "levit_tiny", "--data", str(tmp_path / "nope")], "not found"),
        (["train", "levit_tiny", "--data", str(empty)], "no class subfolders"),
        (base[:4] + ["--out", str(tmp_path / "x"), "--set", "bogus=1"], "bogus"),
        (["eval", str(out / "last.pt"), "--data", str(empty)], "no class subfolders"),
        (["eval", str(tmp_path / "missing.pt"), "--data", str(val_dir)], "not found"),
        (base[:-1] + ["--resume", "--out", str(tmp_path / "fresh")], "no checkpoint"),
    ]
    other = tmp_path / "other-classes"
    shutil.copytree(val_dir, other)
    (other / sorted(p.name for p in other.iterdir())[0]).rename(other / "zebra_dots")
    cases.append((base[:4] + ["--val", str(other), "--out", str(tmp_path / "y")], "different classes"))
    cases.append((["eval", str(out / "last.pt"), "--data", str(other)], "different classes"))
    cases.append((["train", "mobilevitv2_tiny", "--data", str(train_dir), "--out", str(out), "--resume"],
                  "not 'mobilevitv2_tiny'"))
    cases.append((["train", "mobilevitv2_tiny", "--data", str(train_dir), "--out", str(tmp_path / "z"),
                   "--init", str(out / "last.pt")], "levit_tiny"))
    for args, msg in cases:
        res = _run(args)
        assert res.exit_code != 0 and msg in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_corrupt_images_are_skipped_and_counted(tmp_path, data):
    train_dir = tmp_path / "train"
    shutil.copytree(data[0], train_dir)
    first = sorted(train_dir.iterdir())[0]
    (first / "broken.png").write_bytes(b"not a png at all")
    (first / "empty.jpg").write_bytes(b"")
    from edge_sdk.train.engine import TrainJob, train
    recipe = load_recipe("cpu-tiny", {"batch_size": 34, "input_size": 32, "workers": 0, "epochs": 1})
    res = train(TrainJob("levit_tiny", train_dir, tmp_path / "run", recipe, show_progress=False,
                         on_log=lambda m: None))
    assert res.skipped == 2 and res.metrics["skipped"] == 2


def test_grad_checkpointing_gives_same_weights_and_channels_last_runs(tmp_path, data):
    root = data[0].parent
    base = quick_train(tmp_path / "base", steps=2, data_root=root, ema=False)
    ckpt = quick_train(tmp_path / "ckpt", steps=2, data_root=root, ema=False, grad_checkpointing=True)
    a, b = _weights(base.last)[0], _weights(ckpt.last)[0]
    params = dict(create_model("levit_tiny", num_classes=4, input_size=32).named_parameters())
    for k in params:  # recomputing activations in backward must not change the gradients
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # (BatchNorm running stats are updated again by the recomputation: a known torch.utils.checkpoint effect)
    cl = quick_train(tmp_path / "cl", steps=2, data_root=root, ema=False, channels_last=True, clip_grad=0.5)
    c = _weights(cl.last)[0]
    assert all(torch.isfinite(v).all() for v in c.values() if v.is_floating_point())
