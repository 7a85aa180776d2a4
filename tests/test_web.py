"""The browser camera page (apps/web) for real: preprocessing bit-exact with edge_sdk.preprocess (in Node), and in
headless Chromium with a fake camera: logits equal ai-edge-litert's, labels and latency figures shown, no request
leaves 127.0.0.1, a non-blank screenshot, the static `edge-sdk app web` copy, and the error for bundles the page
cannot run.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_tools import (ROOT, WEB, browser_missing, camera_frames, free_port, run_browser, start_serve,  # noqa: E402
                       write_y4m)

TINY = ROOT / "tests" / "assets" / "tiny" / "levit_tiny.pt"
needs_browser = pytest.mark.skipif(bool(browser_missing()), reason=browser_missing() or "")


def convert(out: Path, *extra: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "convert", str(TINY), "--target", "tflite",
                           "-o", str(out), *extra], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return next(p for p in out.iterdir() if (p / "manifest.json").is_file())


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web_bundles")
    return {"nhwc": convert(root / "nhwc", "--nhwc"), "nchw": convert(root / "nchw"),
            "int8": convert(root / "int8", "--nhwc", "--precision", "int8", "--calib-count", "8")}


def input_spec(bundle: Path):
    from edge_sdk.bundle import read_bundle
    m = read_bundle(bundle).manifest
    return m.input if hasattr(m, "input") else m["input"]


def reference_logits(bundle: Path, bgr: np.ndarray) -> np.ndarray:
    """What the SDK computes for the same decoded image: edge_sdk.preprocess + ai-edge-litert via the Predictor."""
    from edge_sdk.runtime import load_bundle
    p = load_bundle(bundle)
    return p.run(p.preprocess([bgr]))[0]


def test_page_preprocessing_is_bit_exact_with_the_sdk(tmp_path, bundles):
    """Node runs apps/web/js/preprocess.js on camera-sized, upscaled and integer-ratio images: every float equal."""
    from edge_sdk.preprocess import preprocess
    spec_json = json.loads((bundles["nhwc"] / "manifest.json").read_text())["input"]
    rng = np.random.default_rng(0)
    sizes = [(480, 640), (720, 1280), (40, 50), (142, 142), (300, 200), (64, 64), (71, 97)]
    images, jobs = [], []
    for i, (h, w) in enumerate(sizes):
        img = cv2.resize(rng.integers(0, 256, (h // 6 + 2, w // 6 + 2, 3), dtype=np.uint8), (w, h),
                         interpolation=cv2.INTER_CUBIC)
        rgba = np.concatenate([img[..., ::-1], np.full((h, w, 1), 255, np.uint8)], 2)
        (tmp_path / f"{i}.rgba").write_bytes(rgba.tobytes())
        images.append(img)
        jobs.append({"path": str(tmp_path / f"{i}.rgba"), "w": w, "h": h})
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"spec": spec_json, "images": jobs, "out": str(tmp_path / "out.bin")}))
    subprocess.run(["node", str(WEB / "tools" / "preprocess_cli.mjs"), str(job)], check=True, cwd=WEB)
    crop = spec_json["crop"]
    got = np.fromfile(tmp_path / "out.bin", np.float32).reshape(len(images), crop, crop, 3)
    spec = input_spec(bundles["nhwc"])
    for (h, w), img, g in zip(sizes, images, got):
        ref = preprocess(img, spec).transpose(1, 2, 0)
        assert np.array_equal(ref, g), f"{w}x{h}: max diff {np.abs(ref - g).max()}"


def test_int8_input_quantization_matches_the_predictor(tmp_path, bundles):
    """The page's int8 model input equals Predictor._to_model_input of the SDK's tensor, element for element."""
    from edge_sdk.runtime import load_bundle
    b = bundles["int8"]
    spec_json = json.loads((b / "manifest.json").read_text())["input"]
    assert spec_json["dtype"] == "int8" and spec_json["quantization"]
    img = camera_frames(1)[0]
    rgba = np.concatenate([img[..., ::-1], np.full(img.shape[:2] + (1,), 255, np.uint8)], 2)
    (tmp_path / "f.rgba").write_bytes(rgba.tobytes())
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"spec": spec_json, "images": [{"path": str(tmp_path / "f.rgba"), "w": img.shape[1],
                                                             "h": img.shape[0]}], "out": str(tmp_path / "o.bin")}))
    subprocess.run(["node", str(WEB / "tools" / "preprocess_cli.mjs"), str(job)], check=True, cwd=WEB)
    page_q = np.fromfile(tmp_path / "o.bin.model", np.int8)
    p = load_bundle(b)
    ref_q = p._to_model_input(p.preprocess([img])).reshape(-1)
    assert ref_q.dtype == np.int8 and np.array_equal(page_q, ref_q)


@pytest.fixture(scope="module")
def y4m(tmp_path_factory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("cam") / "camera.y4m", camera_frames(6))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A PNG (lossless, so the browser decodes the same pixels OpenCV does), larger than the model input."""
    img = camera_frames(1, w=300, h=200)[0]
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    assert cv2.imwrite(str(path), img)
    return path, cv2.imread(str(path), cv2.IMREAD_COLOR)


def _assert_local(requests: list[str], port: int) -> None:
    hosts = {(urlparse(u).hostname, urlparse(u).port) for u in requests if not u.startswith(("data:", "blob:"))}
    assert hosts == {("127.0.0.1", port)}, hosts


def _assert_not_blank(png: Path) -> None:
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 600
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 100


@needs_browser
@pytest.mark.parametrize("kind", ["nhwc", "nchw"])
def test_page_in_chromium_matches_ai_edge_litert(tmp_path, bundles, y4m, photo, kind):
    """Camera frames flow and are timed; the still photo gives the SDK's tensor and ai-edge-litert's logits."""
    bundle = bundles[kind]
    port = free_port()
    proc = start_serve(bundle, port, "--no-qr")
    try:
        shot = tmp_path / "page.png"
        out = run_browser({"url": f"http://127.0.0.1:{port}/", "y4m": str(y4m), "frames": 10, "still": str(photo[0]),
                           "screenshot": str(shot)}, tmp_path)
    finally:
        proc.terminate()
        proc.wait(10)
    assert out.get("driver_error") is None and out["state"] != "error", out
    assert not out["page_errors"], out["page_errors"]
    _assert_local(out["requests"], port)
    # camera: 10 frames classified and timed
    cam = out["camera"]
    assert cam["frames"] >= 10 and len(cam["inference_ms"]) >= 10
    assert all(0 < t < 5000 for t in cam["inference_ms"]) and cam["p90"] >= cam["p50"] > 0
    assert cam["device"]["backend"] == "wasm" and "Chrome" in cam["device"]["user_agent"]
    # still photo: same preprocessed tensor as edge_sdk.preprocess, same logits as ai-edge-litert
    from edge_sdk.preprocess import preprocess
    still = out["still"]
    spec = input_spec(bundle)
    crop = json.loads((bundle / "manifest.json").read_text())["input"]["crop"]
    ref_x = preprocess(photo[1], spec).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(still["normalized"], np.float32).reshape(crop, crop, 3), ref_x)
    ref = reference_logits(bundle, photo[1])
    got = np.asarray(still["logits"], np.float32)
    scale = float(np.abs(ref).max())
    assert got.shape == ref.shape and float(np.abs(got - ref).max()) <= 1e-4 * scale, (got, ref)
    assert still["top"][0]["index"] == int(np.argmax(ref))
    labels = (bundle / "labels.txt").read_text().split()
    assert still["top"][0]["label"] == labels[int(np.argmax(ref))]
    # what a person sees: labels with confidence, latency figures, the backend, the verdict
    assert out["labels_shown"] and out["labels_shown"][0].startswith(labels[int(np.argmax(ref))])
    assert re.search(r"\d+(\.\d+)?%", out["labels_shown"][0])
    t = out["text"]
    for key in ("lat-frame", "lat-pre", "lat-total", "p50", "p90"):
        assert re.fullmatch(r"\d+\.\d+ ms", t[key]), (key, t[key])
    assert t["budget"] == "50 ms" and t["verdict"].startswith(("within", "OVER"))
    assert t["backend-used"].startswith("wasm") and "Chrome" in t["device"]
    _assert_not_blank(shot)


@needs_browser
def test_static_copy_from_edge_sdk_app_web(tmp_path, bundles, y4m):
    """`edge-sdk app web` writes a folder any static server can host; it runs the same page offline."""
    out_dir = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "app", "web", str(bundles["nhwc"]), "-o",
                           str(out_dir)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=out_dir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        time.sleep(1.0)
        out = run_browser({"url": f"http://127.0.0.1:{port}/", "y4m": str(y4m), "frames": 5}, tmp_path)
    finally:
        srv.terminate()
        srv.wait(10)
    assert out.get("driver_error") is None and out["state"] != "error", out
    assert out["camera"]["frames"] >= 5
    _assert_local(out["requests"], port)


@needs_browser
def test_page_refuses_a_bundle_it_cannot_run(tmp_path, bundles):
    """A manifest of another target shows one error naming the convert command (the page's own check)."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "edge_sdk.cli", "app", "web", str(bundles["nhwc"]), "-o", str(site)],
                   check=True, capture_output=True, cwd=ROOT)
    m = json.loads((site / "bundle" / "manifest.json").read_text())
    m["target"] = "executorch"
    (site / "bundle" / "manifest.json").write_text(json.dumps(m))
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=site,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        time.sleep(1.0)
        out = run_browser({"url": f"http://127.0.0.1:{port}/"}, tmp_path)
    finally:
        srv.terminate()
        srv.wait(10)
    assert out["state"] == "error"
    assert "edge-sdk convert levit_tiny --target tflite --nhwc" in out["error"]


def test_serve_refuses_int8_io_bundles(bundles):
    """LiteRT.js 2.5 has no int8 tensors: one error line naming the convert command for a float-I/O bundle."""
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "serve", str(bundles["int8"]), "--port", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "int8" in lines[0] and "edge-sdk convert levit_tiny --target tflite --nhwc" in lines[0]


def test_csp_allows_exactly_the_import_map():
    """The page's Content-Security-Policy (no network but its own origin) carries the hash of its import map."""
    html = (WEB / "index.html").read_text()
    importmap = re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert f"'sha256-{digest}'" in csp
    assert "connect-src 'self'" in csp and "default-src 'self'" in csp
    assert "cdn" not in html.lower() and "https://" not in html
    for target in json.loads(importmap)["imports"].values():
        assert target.startswith("./vendor/")
