"""apps/camera/camera_demo.py run headless as a user would (subprocess): per-frame top-1 equal to the runtime's own
`predict` on the same decoded frames, an annotated video with every frame, and one clear error per bad input."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "apps" / "camera" / "camera_demo.py"
FRAMES = 10
LABELS = [f"thing_{i}" for i in range(10)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A tiny ExecuTorch XNNPACK bundle made by the real conversion pipeline (64x64 input, 10 labelled classes)."""
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    out = tmp_path_factory.mktemp("camera_bundles")
    (res,) = convert("levit_tiny", "executorch", ConvertOptions(input_size=64), out, num_classes=10,
                     labels=LABELS, show_progress=False)
    return res.bundle


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """10 synthetic 96x96 frames in an MJPG .avi."""
    from edge_sdk.data.synth import make_images
    images, _ = make_images(FRAMES, size=96, seed=3)  # (10, 96, 96, 3) RGB
    path = tmp_path_factory.mktemp("camera_video") / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 96))
    assert w.isOpened()
    for img in images:
        w.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    w.release()
    return path


def decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def demo(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, str(DEMO), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=full_env)


def test_headless_video_matches_runtime_predict(bundle, video, tmp_path):
    from edge_sdk.runtime import load_bundle
    out = tmp_path / "annotated.mp4"
    r = demo(bundle, "--source", video, "--headless", "--out", out, "--json", "--budget-ms", "50")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["frames"] == FRAMES and len(s["per_frame"]) == FRAMES
    assert s["target"] == "executorch" and s["model"] == "levit_tiny" and s["out"] == str(out)
    assert set(s["latency_ms"]) == {"preprocess", "inference", "total"}
    assert 0 < s["latency_ms"]["total"]["p50"] <= s["latency_ms"]["total"]["p90"]
    assert s["over_budget"] == sum(f["total_ms"] > 50 for f in s["per_frame"])
    assert all(len(f["top"]) == 3 for f in s["per_frame"])
    # the annotated video holds every frame, upscaled for a readable overlay, and no temp file is left behind
    annotated = decode(out)
    assert len(annotated) == FRAMES and annotated[0].shape == (360, 360, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4"]
    # same top-1 as the runtime harness on the same decoded frames
    expected = load_bundle(bundle).predict(decode(video), top_k=3)
    assert [f["top"][0]["index"] for f in s["per_frame"]] == [e[0]["index"] for e in expected]
    assert [f["top"][0]["label"] for f in s["per_frame"]] == [e[0]["label"] for e in expected]
    assert s["per_frame"][0]["top"][0]["label"] in LABELS
    np.testing.assert_allclose([f["top"][0]["prob"] for f in s["per_frame"]], [e[0]["prob"] for e in expected],
                               rtol=1e-5)


def test_image_folder_source_max_frames_and_text_summary(bundle, tmp_path, capsys):
    """In-process through main() (no second interpreter start-up: saves ~5 s of CPU in the suite)."""
    import importlib.util
    from edge_sdk.data.synth import make_images
    images, _ = make_images(4, size=80, seed=5)
    for i, img in enumerate(images):
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), img)
    spec = importlib.util.spec_from_file_location("camera_demo", DEMO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # no --threads here: ExecuTorch's thread pool may only be sized before the first load in a process
    code = mod.main([str(bundle), "--source", str(tmp_path), "--headless", "--max-frames", "3",
                     "--out", str(tmp_path / "o.avi")])
    out = capsys.readouterr().out
    assert code == 0
    assert "3 frames from 4 images in" in out
    assert "p50" in out and "p90" in out and "over the 50 ms budget" in out
    assert len(decode(tmp_path / "o.avi")) == 3


def _coreml_bundle(src: Path, dest: Path) -> Path:
    """A Core ML-shaped bundle (valid manifest + sha256) to check the Linux path without coremltools conversion."""
    from edge_sdk.bundle import sha256_file
    shutil.copytree(src, dest)
    pkg = dest / "model.mlpackage"
    pkg.mkdir()
    (pkg / "Manifest.json").write_text("{}")
    (dest / "model.pte").unlink()
    m = json.loads((dest / "manifest.json").read_text())
    m.update(target="coreml", backend="coreml", precision="fp16", file="model.mlpackage", sha256=sha256_file(pkg))
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the Linux 'needs macOS' path")
def test_error_paths_exit_codes_without_tracebacks(bundle, video, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    not_bundle = tmp_path / "empty_dir"
    not_bundle.mkdir()
    cases = [
        ((tmp_path / "nope", "--source", video, "--headless"), 2, "bundle not found"),
        ((not_bundle, "--source", video, "--headless"), 1, "not a bundle"),
        ((bundle, "--source", junk, "--headless"), 1, "cannot read video"),
        ((bundle, "--source", tmp_path / "missing.mp4", "--headless"), 2, "source not found"),
        ((bundle, "--source", "7", "--headless"), 1, "no camera at index 7"),
        ((bundle, "--source", video, "--headless", "--out", tmp_path / "x.gif"), 2, "--out must end in"),
        ((bundle, "--source", video, "--headless", "--max-frames", "0"), 2, "--max-frames must be >= 1"),
        ((bundle, "--source", video, "--headless", "--threads", "0"), 2, "--threads must be >= 1"),
        ((_coreml_bundle(bundle, tmp_path / "cm"), "--source", video, "--headless"), 1, "needs macOS"),
    ]
    for args, code, message in cases:
        r = demo(*args)
        assert r.returncode == code, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stdout == ""
    r = demo(bundle, "--source", video, env={"DISPLAY": None, "WAYLAND_DISPLAY": None})  # window asked, no screen
    assert r.returncode == 2 and "--headless" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.gif").exists()
