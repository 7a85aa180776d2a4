"""Test bundles for the runtime/predict/bench tests, built once per test session and shared by xdist workers.

A tiny zoo model (levit_tiny, 64x64, 10 classes) with realistic (non-zero) weights is converted by the converter
pipeline to ExecuTorch XNNPACK fp32 and LiteRT fp32 (NCHW and NHWC I/O). The cache folder is locked so two workers
never build at once.
"""
from __future__ import annotations

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


def build_bundles(cache: Path) -> dict[str, Path]:
    """{kind: bundle path} converted by the real pipeline (with parity), building what is missing under a lock."""
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    cache.mkdir(parents=True, exist_ok=True)
    names = {"executorch": "executorch-xnnpack-fp32", "tflite": "tflite-litert-fp32",
             "tflite_nhwc": "tflite-litert-fp32-nhwc"}
    out = {k: cache / f"{MODEL}-{n}" for k, n in names.items()}
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [k for k, p in out.items() if not (p / "manifest.json").is_file()]
        if missing:
            model = make_model()
            model.name = MODEL
            for k in missing:
                target = "executorch" if k == "executorch" else "tflite"
                res = convert(model, target, ConvertOptions(nhwc=k == "tflite_nhwc"), cache, labels=LABELS,
                              show_progress=False)
                assert res[0].bundle == out[k] and res[0].parity["status"] == "passed", res[0].parity
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
