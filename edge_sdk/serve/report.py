"""Per-device timings posted by the camera page: live status lines and the `edge-sdk bench --json` report.

Each page load is one session (a device + browser + backend). Its frames are kept in order; the report turns each
session into one result row in the bench schema (p50/p90/... of the inference time, budget verdict on p90), with
device = the browser's user agent and backend, so browser numbers sit in the same tables as host and adb ones.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.bench import apply_budget, latency_stats

_NUM = (int, float)
FRAME_KEYS = ("preprocess_ms", "inference_ms", "total_ms")


@dataclass
class Session:
    """One page load: what it ran on and the frames it measured."""

    key: str
    device: dict[str, Any]
    load_ms: float | None = None
    first_ms: float | None = None
    frames: list[dict[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    updated: float = field(default_factory=time.monotonic)

    @property
    def label(self) -> str:
        """A short name for the terminal: browser + OS from the user agent, and the backend."""
        ua = str(self.device.get("user_agent") or "unknown browser")
        browser = re.search(r"(Edg|CriOS|FxiOS|Firefox|SamsungBrowser|HeadlessChrome|Chromium|Chrome|Version)/([\d]+)",
                            ua)
        osname = re.search(r"\((?:Linux; )?(Android [\d.]+|iPhone OS [\d_]+|iPad[^;)]*|Windows[^;)]*|Mac OS X [\d_]+|"
                           r"X11; [^;)]*|Linux[^;)]*)", ua)
        name = ("Safari" if browser and browser.group(1) == "Version" else browser.group(1)) if browser else "browser"
        where = osname.group(1) if osname else ""
        where = where.replace("_", ".") if where.startswith(("iPhone", "iPad", "Mac")) else where
        return f"{name} {where} [{self.device.get('backend', '?')}]".replace("  ", " ")

    def fps(self, last: int = 30) -> float | None:
        """Frames per second over the last frames, from the page's own timestamps (network delays excluded)."""
        t = [f["t"] for f in self.frames[-(last + 1):] if "t" in f]
        return (len(t) - 1) * 1e3 / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else None

    def stats(self, n: int | None = None) -> dict[str, float]:
        return latency_stats([f["inference_ms"] for f in self.frames[:n]])


def _clean_frames(raw: Any) -> list[dict[str, float]]:
    """Keep only well-formed frames (numbers >= 0): the page is trusted to measure, not to be well-behaved."""
    out = []
    for f in raw if isinstance(raw, list) else []:
        if isinstance(f, dict) and all(isinstance(f.get(k), _NUM) and 0 <= f[k] < 1e7 for k in FRAME_KEYS):
            extra = {k: f[k] for k, kind in (("top1", int), ("t", _NUM)) if isinstance(f.get(k), kind)}
            out.append({k: float(f[k]) for k in FRAME_KEYS} | extra)
    return out


class Collector:
    """Thread-safe store of sessions; `done` is set when one session reached `target_frames`."""

    def __init__(self, budget_ms: float, target_frames: int | None = None) -> None:
        self.budget_ms = budget_ms
        self.target_frames = target_frames
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.changed = threading.Event()

    def add(self, payload: dict[str, Any], peer: str) -> bool:
        """Record one POST from a page; returns True when the run is complete (the page then stops posting)."""
        key = f"{peer}/{str(payload.get('session'))[:32]}"
        device = payload.get("device") if isinstance(payload.get("device"), dict) else {}
        frames = _clean_frames(payload.get("frames"))
        with self.lock:
            s = self.sessions.get(key)
            if s is None:
                s = self.sessions[key] = Session(key, {k: device.get(k) for k in
                                                       ("user_agent", "platform", "mobile", "cores", "backend", "gpu")})
            for k in ("load_ms", "first_ms"):
                if isinstance(payload.get(k), _NUM):
                    setattr(s, k, float(payload[k]))
            s.frames.extend(frames)
            s.updated = time.monotonic()
            if self.target_frames and len(s.frames) >= self.target_frames:
                self.done.set()
        self.changed.set()
        return self.done.is_set()

    def line(self, s: Session) -> str:
        """`Chrome Android 14 [wasm]  120 frames  p50 4.1 ms  p90 5.0 ms  31.2 FPS  budget 50 ms: ok`."""
        if not s.frames:
            return f"{s.label}  waiting for frames"
        st = s.stats()
        verdict = "ok" if st["p90_ms"] <= self.budget_ms else "OVER"
        fps = s.fps()
        return (f"{s.label}  {len(s.frames)} frames  p50 {st['p50_ms']:.2f} ms  p90 {st['p90_ms']:.2f} ms  "
                f"{'-' if fps is None else f'{fps:.1f}'} FPS  budget {self.budget_ms:g} ms: {verdict}")

    def lines(self) -> list[str]:
        with self.lock:
            return [self.line(s) for s in self.sessions.values()]

    def results(self, bundle_name: str, manifest: Any) -> list[dict[str, Any]]:
        """One bench-schema row per session that measured frames (the first `target_frames` of each)."""
        rows = []
        with self.lock:
            sessions = [s for s in self.sessions.values() if s.frames]
        for s in sessions:
            n = self.target_frames
            frames = s.frames[:n]
            row = {
                "name": bundle_name, "target": manifest.target, "backend": manifest.backend,
                "precision": manifest.precision, "model": manifest.model.name,
                "macs": manifest.model.macs, "threads": None, "e2e": False,
                "device": f"{s.device.get('user_agent')} [{s.device.get('backend')}]",
                "runner": f"litert.js {s.device.get('backend')}", "load_ms": s.load_ms, "first_ms": s.first_ms,
                **s.stats(n), "runs": len(frames), "warmup": 0,
                "browser": s.device,
                "latency_ms": {k[:-3]: latency_stats([f[k] for f in frames]) for k in FRAME_KEYS},
                "per_frame": frames,
            }
            rows.append(apply_budget(row, self.budget_ms))
        return rows
