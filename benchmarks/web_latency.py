#!/usr/bin/env python3
"""Per-frame latency of .tflite bundles in the browser page (apps/web), measured the way a phone would be.

For each bundle: `edge-sdk serve BUNDLE --frames N --report` and headless Chromium (Debian's /usr/bin/chromium via
playwright-core, LiteRT.js on wasm/XNNPACK, one thread) with a fake 640x480 camera from a Y4M file; the page posts
its per-frame timings, serve writes the bench-schema report. Results: benchmarks/results/web_latency.{json,md}.
Optionally a screenshot of the page in still-image mode (--screenshot PNG --photo JPG) for the docs.

    make web-deps
    python benchmarks/web_latency.py bundles/a-tflite-litert-fp32-nhwc bundles/b-tflite-litert-fp32-nhwc \
        --frames 200 --screenshot docs/img/web-camera.png --photo tests/assets/photos/cat.jpg
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from web_tools import camera_frames, free_port, run_browser, start_serve, write_y4m  # noqa: E402

OUT = ROOT / "benchmarks" / "results"


def measure(bundle: Path, frames: int, tmp: Path, y4m: Path, shot: Path | None, photo: Path | None) -> dict:
    port = free_port()
    report = tmp / f"{bundle.name}.json"
    proc = start_serve(bundle, port, "--frames", str(frames), "--report", str(report), "--no-qr", "--timeout", "900",
                       "--budget-ms", "50")
    job = {"url": f"http://127.0.0.1:{port}/", "y4m": str(y4m), "frames": frames, "wait_done": True,
           "timeout_ms": 900_000}
    page = run_browser(job, tmp, timeout_s=1000)
    proc.communicate(timeout=120)
    if page.get("driver_error"):
        raise SystemExit(f"{bundle.name}: {page['driver_error']}")
    row = json.loads(report.read_text())["results"][0]
    if shot is not None and photo is not None:  # a second page load for the still-image screenshot
        port = free_port()
        proc = start_serve(bundle, port, "--no-qr")
        try:
            run_browser({"url": f"http://127.0.0.1:{port}/", "y4m": str(y4m), "frames": 20, "still": str(photo),
                         "screenshot": str(shot)}, tmp, timeout_s=600)
        finally:
            proc.terminate()
            proc.wait(10)
    return row


def chromium_version() -> str:
    out = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG of the first bundle's page (still mode)")
    ap.add_argument("--photo", type=Path, default=None, help="photo for the screenshot")
    a = ap.parse_args()
    a.screenshot = a.screenshot.resolve() if a.screenshot else None  # the driver runs in apps/web
    a.photo = a.photo.resolve() if a.photo else None
    from edge_sdk.bench import machine_info
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        y4m = write_y4m(tmp / "cam.y4m", camera_frames(8))
        for i, b in enumerate(a.bundles):
            rows.append(measure(b, a.frames, tmp, y4m, a.screenshot if i == 0 else None, a.photo))
            print(f"{b.name}: p50 {rows[-1]['p50_ms']:.2f} ms, p90 {rows[-1]['p90_ms']:.2f} ms", flush=True)
    litert = json.loads((ROOT / "apps/web/node_modules/@litertjs/core/package.json").read_text())["version"]
    meta = {"machine": machine_info(), "chromium": chromium_version(), "litertjs": litert, "frames": a.frames,
            "camera": "fake 640x480 Y4M", "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "node": subprocess.run(["node", "--version"], capture_output=True,
                                                                 text=True).stdout.strip()}
    OUT.mkdir(parents=True, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k != "per_frame"} for r in rows]
    (OUT / "web_latency.json").write_text(json.dumps({**meta, "results": slim}, indent=2) + "\n")
    lines = [f"# Per-frame latency in headless Chromium (LiteRT.js {litert}, wasm)", "",
             f"{meta['chromium']}, {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
             f"{platform.platform()}; 1-min load average {meta['load_average'][0]} before, {meta['load_average'][1]} after "
             f"(other jobs on the machine: an upper bound); {a.frames} camera frames (fake 640x480 Y4M) per bundle, "
             "`edge-sdk serve --frames N --report` + `benchmarks/web_latency.py`. inference = LiteRT.js run + "
             "output read-back; preprocess = canvas read-back + bit-exact resize/crop/normalize in JS.", "",
             "| bundle | MACs | load ms | first ms | inference p50 | p90 | preprocess p50 | frame total p50 | "
             "within 50 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = r["latency_ms"]
        lines.append(f"| {r['name']} | {r['macs'] / 1e9:.2f}G | {r['load_ms']:.0f} | {r['first_ms']:.1f} | "
                     f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {lat['preprocess']['p50_ms']:.2f} | "
                     f"{lat['total']['p50_ms']:.2f} | {'yes' if r['within_budget'] else 'no'} |")
    (OUT / "web_latency.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT / 'web_latency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
