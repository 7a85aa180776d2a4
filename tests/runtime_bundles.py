"""Test bundles for the runtime/predict/bench tests, built once per test session and shared by xdist workers.

A tiny zoo model (levit_tiny, 64x64, 10 classes) with realistic (non-zero) weights is exported to ExecuTorch
XNNPACK fp32 and LiteRT fp32 (NCHW and NHWC I/O). The cache folder is locked so two workers never build at once.
"""
from __future__ import annotations

import copy
import fcntl
import json
from pathlib import Path


MODEL = "levit_tiny"
CLASSES = 10
LABELS = [f"label_{i}" for i in range(CLASSES)]
KINDS = ("executorch", "tflite", "tflite_nhwc")


def make_model():
    """The reference model; the same seed gives the same weights in every worker."""
    import torch
    from edge_sdk.models import create_model
    from edge_sdk.runtime.realistic import fill_realistic_weights
    torch.manual_seed(0)
    return fill_realistic_weights(create_model(MODEL, num_classes=CLASSES), seed=0)


def _manifest(model, target: str, backend: str, file: str, layout: str) -> dict:
    from edge_sdk.models import count_macs, count_params
    d = model.deploy.to_dict()
    s = d["input_size"]
    shape = [1, 3, s, s] if layout == "NCHW" else [1, s, s, 3]
    return {"model": {"name": MODEL, "family": model.family, "num_classes": CLASSES, "config": model.config_dict(),
                      "params": count_params(model), "macs": count_macs(model), "checkpoint_sha256": None},
            "target": target, "backend": backend, "precision": "fp32", "file": file,
            "input": {"name": "x", "shape": shape, "layout": layout, "dtype": "float32", "color": "RGB",
                      "scale": 1 / 255, "resize": d["resize"], "crop": s, "mean": d["mean"], "std": d["std"],
                      "normalization_in_model": False, "quantization": None},
            "output": {"name": "logits", "shape": [1, CLASSES], "dtype": "float32", "kind": "logits",
                       "quantization": None},
            "_labels": LABELS, "toolchain": {}, "report": {}, "parity": {"status": "not_run", "reason": "fixture"}}


def _export(kind: str, model, tmp: Path) -> dict:
    import torch
    from edge_sdk.models import reparameterize_model
    m = reparameterize_model(copy.deepcopy(model))
    x = m.example_inputs(1)
    if kind == "executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        ep = torch.export.export(m, x)
        prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
        (tmp / "model.pte").write_bytes(prog.buffer)
        return _manifest(model, "executorch", "xnnpack", "model.pte", "NCHW")
    import litert_torch
    if kind == "tflite":
        litert_torch.convert(m, x).export(str(tmp / "model.tflite"))
        return _manifest(model, "tflite", "litert", "model.tflite", "NCHW")
    nhwc = litert_torch.to_channel_last_io(m, args=[0])
    litert_torch.convert(nhwc, (x[0].permute(0, 2, 3, 1).contiguous(),)).export(str(tmp / "model.tflite"))
    return _manifest(model, "tflite", "litert", "model.tflite", "NHWC")


def build_bundles(cache: Path) -> dict[str, Path]:
    """{kind: bundle path}, building whatever is missing under a file lock."""
    from edge_sdk.bundle import write_bundle
    cache.mkdir(parents=True, exist_ok=True)
    out = {k: cache / f"{MODEL}-{k}" for k in KINDS}
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [k for k, p in out.items() if not (p / "manifest.json").is_file()]
        if missing:
            model = make_model()
            for k in missing:
                write_bundle(out[k], lambda tmp, k=k: _export(k, model, tmp))
    return out


def write_pngs(folder: Path, n: int = 4, size: int = 96) -> list[Path]:
    """Real PNG files of the procedural dataset (decoded again by the code under test)."""
    import cv2
    from edge_sdk.data.synth import make_images
    folder.mkdir(parents=True, exist_ok=True)
    images, _ = make_images(n, size=size, seed=3)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"img_{i}.png"
        assert cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def copy_bundle(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def rewrite_manifest(bundle: Path, **changes) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    m.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(m))


def fix_sha(bundle: Path) -> None:
    from edge_sdk.bundle import sha256_file
    m = json.loads((bundle / "manifest.json").read_text())
    rewrite_manifest(bundle, sha256=sha256_file(bundle / m["file"]))




def session_cache(tmp_path_factory) -> Path:
    """A folder shared by all xdist workers of this test session (but not by other sessions)."""
    import os
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "runtime-bundles"
