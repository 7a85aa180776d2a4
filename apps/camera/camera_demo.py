#!/usr/bin/env python3
"""Camera demo: run any edge-sdk bundle (ExecuTorch, LiteRT, Core ML on macOS) live on camera / video / image frames.

Each frame is read with OpenCV, classified by the bundle's Predictor (the same runtime harness `edge-sdk predict`
and the parity checks use, so what you see is what a phone app would compute), and shown with its top-3 labels,
per-frame latency (preprocess, inference, total) and a moving FPS. With --headless the annotated frames go to a
video file instead of a window. At the end a latency summary is printed (and a JSON summary with --json).

Usage:
    python apps/camera/camera_demo.py BUNDLE [--source 0|VIDEO_FILE|IMAGE_DIR] [--threads N] [--budget-ms 50]
                                      [--headless --out annotated.mp4] [--max-frames N] [--json]

Exit codes: 0 done, 1 failure (no camera, unreadable video, bad bundle, runtime error), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.errors import EdgeError, UsageError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from camera_overlay import annotate, display_size  # noqa: E402
from camera_sources import FrameSource, open_source  # noqa: E402

WINDOW = "edge-sdk camera demo"
FPS_WINDOW = 30  # frames in the moving FPS average
TOP_K = 3
_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="camera_demo.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Classify camera / video / image frames with an edge-sdk bundle and overlay the results.",
        epilog="examples:\n"
               "  python apps/camera/camera_demo.py bundles/levit_128s-executorch-xnnpack-fp32\n"
               "  python apps/camera/camera_demo.py BUNDLE --source clip.mp4 --headless --out annotated.mp4 --json\n"
               "  python apps/camera/camera_demo.py BUNDLE --source photos/ --headless --max-frames 100")
    ap.add_argument("bundle", help="bundle directory written by `edge-sdk convert`")
    ap.add_argument("--source", default="0", help="camera index (default 0), a video file, or a folder of images")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime (default: its own)")
    ap.add_argument("--budget-ms", type=float, default=50.0, help="per-frame latency budget in ms (default 50)")
    ap.add_argument("--headless", action="store_true", help="no window (servers, CI); use --out to keep the frames")
    ap.add_argument("--out", type=Path, default=None, help="write the annotated frames to a video (.mp4 or .avi)")
    ap.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (with per-frame top-3)")
    return ap.parse_args(argv)


def check_args(a: argparse.Namespace) -> None:
    """Cheap checks first, so a typo costs no model load and leaves no files behind."""
    if a.threads is not None and a.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {a.threads}")
    if a.budget_ms <= 0:
        raise UsageError(f"--budget-ms must be > 0, got {a.budget_ms:g}")
    if a.max_frames is not None and a.max_frames < 1:
        raise UsageError(f"--max-frames must be >= 1, got {a.max_frames}")
    if a.out is not None:
        if a.out.suffix.lower() not in _CODECS:
            raise UsageError(f"--out must end in {', '.join(_CODECS)}; got {a.out.name}")
        if a.out.is_dir():
            raise UsageError(f"--out {a.out} is a directory; give a video file name")
        if not a.out.parent.resolve().is_dir():
            raise UsageError(f"--out folder {a.out.parent} does not exist")


def open_window() -> None:
    """Fail early and clearly when there is no GUI (no screen, or the headless OpenCV build)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError("no screen available (DISPLAY is not set); use --headless [--out annotated.mp4]")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise UsageError("this OpenCV build has no GUI support (opencv-python-headless?); install opencv-python "
                         "for a window, or use --headless [--out annotated.mp4]") from None


class VideoOut:
    """An annotated video written to a temp file beside the destination and renamed into place only when complete,
    so an interrupted or failed run never leaves a half-written file under the requested name."""

    def __init__(self, dest: Path, fps: float, size: tuple[int, int]) -> None:
        self.dest = dest
        self.tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.partial{dest.suffix}")
        self.size = size
        self.frames = 0
        fourcc = cv2.VideoWriter_fourcc(*_CODECS[dest.suffix.lower()])
        self._w = cv2.VideoWriter(str(self.tmp), fourcc, fps, size)
        if not self._w.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise EdgeError(f"cannot write video {dest} (codec {_CODECS[dest.suffix.lower()]} unavailable?)")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:  # image folders may mix sizes; a video has one
            frame = cv2.resize(frame, self.size)
        self._w.write(frame)
        self.frames += 1

    def finish(self, keep: bool) -> None:
        self._w.release()
        if keep and self.frames:
            os.replace(self.tmp, self.dest)
        else:
            self.tmp.unlink(missing_ok=True)


def classify(predictor: Any, frame: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Top-3 for one frame, timed in the same steps as Predictor.predict (preprocess, then run + softmax)."""
    from edge_sdk.runtime import softmax
    t0 = time.perf_counter()
    x = predictor.preprocess([frame])  # (1, 3, H, W) normalized float32
    t1 = time.perf_counter()
    out = predictor.run(x)  # (1, classes)
    t2 = time.perf_counter()
    probs = out.astype(np.float64) if predictor.output_spec.kind == "probabilities" else softmax(out)
    top = predictor.top_k(probs[0], TOP_K)
    t3 = time.perf_counter()
    return top, {"preprocess": 1e3 * (t1 - t0), "inference": 1e3 * (t2 - t1), "total": 1e3 * (t3 - t0)}


def run_loop(a: argparse.Namespace, predictor: Any, source: FrameSource) -> tuple[list[dict[str, Any]], float]:
    """Classify frames until the source ends, --max-frames, 'q'/Esc in the window, or Ctrl-C."""
    records: list[dict[str, Any]] = []
    stamps: deque[float] = deque(maxlen=FPS_WINDOW + 1)
    writer: VideoOut | None = None
    start = time.perf_counter()
    ok = False
    try:
        for i, frame in enumerate(source):
            top, lat = classify(predictor, frame)
            stamps.append(time.perf_counter())
            fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
            records.append({"frame": i, "top": top, **{f"{k}_ms": round(v, 3) for k, v in lat.items()}})
            size = display_size(*frame.shape[:2])
            shown = annotate(frame, top, lat, fps, a.budget_ms, size)
            if a.out is not None:
                writer = writer or VideoOut(a.out, source.fps, size)
                writer.write(shown)
            if not a.headless:
                cv2.imshow(WINDOW, shown)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            elif not a.json and (i + 1) % 100 == 0:
                print(f"  {i + 1} frames, {lat['total']:.1f} ms last, {fps:.1f} FPS", file=sys.stderr)
            if a.max_frames is not None and i + 1 >= a.max_frames:
                break
        ok = True
    except KeyboardInterrupt:
        ok = True  # stopping the demo by hand is a normal end: keep the video and print the summary
    finally:
        if writer is not None:
            writer.finish(keep=ok)
    return records, time.perf_counter() - start


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return {"p50": round(float(np.percentile(v, 50)), 3), "p90": round(float(np.percentile(v, 90)), 3),
            "mean": round(float(v.mean()), 3)}


def summarize(a: argparse.Namespace, predictor: Any, source: FrameSource, records: list[dict[str, Any]],
              wall_s: float) -> dict[str, Any]:
    n = len(records)
    m = predictor.manifest  # None for a PyTorch reference
    return {
        "bundle": str(a.bundle), "model": m.model.name if m else None, "target": predictor.target,
        "backend": m.backend if m else None, "precision": m.precision if m else None, "source": source.description,
        "threads": a.threads, "frames": n, "budget_ms": a.budget_ms,
        "over_budget": sum(r["total_ms"] > a.budget_ms for r in records),
        "latency_ms": {k: _stats([r[f"{k}_ms"] for r in records]) for k in ("preprocess", "inference", "total")}
        if n else None,
        "fps": round(n / wall_s, 2) if n and wall_s > 0 else 0.0,
        "out": str(a.out) if a.out is not None and n else None,
        "per_frame": records,
    }


def print_summary(s: dict[str, Any], stream: Any) -> None:
    print(f"{s['frames']} frames from {s['source']} with {s['model']} ({s['target']}/{s['backend']} "
          f"{s['precision']})", file=stream)
    if s["latency_ms"]:
        for k in ("preprocess", "inference", "total"):
            st = s["latency_ms"][k]
            print(f"  {k:<10} p50 {st['p50']:8.2f} ms   p90 {st['p90']:8.2f} ms", file=stream)
        print(f"  over the {s['budget_ms']:g} ms budget: {s['over_budget']} of {s['frames']} frames; "
              f"{s['fps']:.1f} FPS overall (with drawing and I/O)", file=stream)
    if s["out"]:
        print(f"  annotated video: {s['out']}", file=stream)


def _close_windows() -> None:
    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass  # no GUI: nothing was opened


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    source: FrameSource | None = None
    try:
        check_args(a)
        if not a.headless:
            open_window()
        source = open_source(a.source)
        from edge_sdk.runtime import load_bundle
        predictor = load_bundle(a.bundle, threads=a.threads)
        records, wall_s = run_loop(a, predictor, source)
        if not records:
            raise EdgeError(f"no frames were read from {source.description}")
        summary = summarize(a, predictor, source, records, wall_s)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (cv2.error, OSError) as exc:
        print(f"error: {exc}".strip(), file=sys.stderr)
        return 1
    finally:
        if source is not None:
            source.close()
        if not a.headless:
            _close_windows()
    if a.json:
        print(json.dumps(summary))
        print_summary(summary, sys.stderr)
    else:
        print_summary(summary, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
