"""Drawing the demo's overlay: top-k labels with probability bars, per-frame latency and a moving FPS.

Small frames are scaled up first (shorter side >= MIN_SIDE) so the text stays readable in the window and the video.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

MIN_SIDE = 360
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE, _GREEN, _RED = (255, 255, 255), (40, 150, 40), (80, 80, 255)


def display_size(h: int, w: int) -> tuple[int, int]:
    """(width, height) of the annotated frame: the source size, scaled up when its shorter side is < MIN_SIDE."""
    scale = max(1.0, MIN_SIDE / min(h, w))
    return int(round(w * scale)), int(round(h * scale))


def _text(img: np.ndarray, s: str, org: tuple[int, int], color: tuple[int, int, int], size: float) -> None:
    cv2.putText(img, s, org, _FONT, size, color, 1, cv2.LINE_AA)


def _shade(img: np.ndarray, y0: int, y1: int) -> None:
    """Darken a full-width band in place so white text stays readable on any background."""
    band = img[max(0, y0):y1]
    band[:] = cv2.addWeighted(band, 0.4, np.zeros_like(band), 0.6, 0)


def annotate(frame_bgr: np.ndarray, top: Sequence[dict[str, Any]], lat_ms: dict[str, float], fps: float,
             budget_ms: float, size: tuple[int, int]) -> np.ndarray:
    """A new (size[1], size[0], 3) frame with the overlay; the input frame is not modified."""
    img = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_LINEAR)
    line = 22
    _shade(img, 0, 12 + len(top) * line)
    _shade(img, img.shape[0] - 12 - 2 * line, img.shape[0])
    for i, t in enumerate(top):
        y = 26 + i * line
        bar = int(120 * float(t["prob"]))
        cv2.rectangle(img, (8, y - 14), (8 + bar, y + 2), _GREEN, -1)
        _text(img, f"{t['label']}  {100 * float(t['prob']):.1f}%", (10, y), _WHITE, 0.55)
    over = lat_ms["total"] > budget_ms
    y0 = img.shape[0] - 12
    _text(img, f"pre {lat_ms['preprocess']:.1f} ms  infer {lat_ms['inference']:.1f} ms  "
               f"total {lat_ms['total']:.1f} ms", (10, y0 - line), _RED if over else _WHITE, 0.5)
    _text(img, f"{fps:.1f} FPS   budget {budget_ms:g} ms", (10, y0), _WHITE, 0.5)
    return img
