"""Helpers for the browser tests: a fake-camera Y4M video, the headless-Chromium driver, a free port, a server.

Chromium (Debian's /usr/bin/chromium) and apps/web/node_modules (playwright-core, @litertjs/*) are installed by
`make web-deps`, which `make test` runs first.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "apps" / "web"
DRIVER = WEB / "tools" / "browser.mjs"
CHROMIUM = os.environ.get("EDGE_SDK_CHROMIUM", "/usr/bin/chromium")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not installed (make web-deps)"
    if not shutil.which("node"):
        return "node not installed"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "apps/web/node_modules missing (make web-deps)"
    return None


def write_y4m(path: Path, frames_bgr: list[np.ndarray], fps: int = 30) -> Path:
    """A Y4M video (text header + raw YUV 4:2:0 frames) that Chromium's fake camera plays in a loop."""
    import cv2
    h, w = frames_bgr[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for img in frames_bgr:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def camera_frames(n: int = 8, w: int = 640, h: int = 480) -> list[np.ndarray]:
    """Camera-like frames from the procedural dataset (smooth shapes, not noise)."""
    import cv2
    from edge_sdk.data.synth import make_images
    images, _ = make_images(n, size=h, seed=11)
    return [cv2.resize(img, (w, h)) for img in images]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_browser(job: dict, tmp: Path, timeout_s: float = 240) -> dict:
    """Run the Node driver on one job; returns its JSON (page state, texts, requests, console)."""
    job_file = tmp / f"job-{time.monotonic_ns()}.json"
    job_file.write_text(json.dumps({"chromium": CHROMIUM, **job}))
    proc = subprocess.run(["node", str(DRIVER), str(job_file)], capture_output=True, text=True, timeout=timeout_s,
                          cwd=WEB)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"driver printed no result (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


def start_serve(bundle: Path, port: int, *extra: str) -> subprocess.Popen:
    """`edge-sdk serve` as a user runs it; returns once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk.cli", "serve", str(bundle), "--port", str(port),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early ({proc.returncode}): {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("serve did not start listening")
