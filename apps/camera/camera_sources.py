"""Frame sources for the camera demo: a camera index, a video file, or a folder of images — all yield BGR frames.

Opening is checked up front (the first frame is read immediately) so a missing camera or an unreadable video fails
with one clear message before any model work, instead of an empty run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.preprocess import list_images, read_image


class FrameSource:
    """Iterates BGR uint8 frames (H, W, 3); `fps` is the source's nominal rate (used for the output video)."""

    def __init__(self, description: str, fps: float) -> None:
        self.description = description
        self.fps = fps

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; safe to call twice."""


class CaptureSource(FrameSource):
    """cv2.VideoCapture on a camera index or a video file."""

    def __init__(self, cap: cv2.VideoCapture, first: np.ndarray, description: str) -> None:
        fps = cap.get(cv2.CAP_PROP_FPS)
        super().__init__(description, fps if 1.0 <= fps <= 240.0 else 30.0)
        self._cap, self._first = cap, first

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._first is not None:
            frame, self._first = self._first, None
            yield frame
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                return
            yield _to_bgr(frame)

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource(FrameSource):
    """Every image under a folder, sorted by path, one per frame (images may have different sizes)."""

    def __init__(self, paths: list[Path], folder: Path, fps: float = 10.0) -> None:
        super().__init__(f"{len(paths)} images in {folder}", fps)
        self._paths = paths

    def __iter__(self) -> Iterator[np.ndarray]:
        for p in self._paths:
            yield read_image(p)  # EdgeError on an undecodable file, naming it


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    """Some cameras deliver grayscale or BGRA; the model side expects 3-channel BGR."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def _open_capture(target: int | str, what: str, missing: str) -> CaptureSource:
    cap = cv2.VideoCapture(target)
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok or frame is None:
        cap.release()
        raise EdgeError(missing)
    return CaptureSource(cap, _to_bgr(frame), what)


def open_source(source: str) -> FrameSource:
    """'0' (a camera index), a video file, or a folder of images."""
    if source.isdigit():
        index = int(source)
        return _open_capture(index, f"camera {index}",
                             f"no camera at index {index} (none attached, busy, or no permission); "
                             "use --source VIDEO_FILE or IMAGE_DIR instead")
    path = Path(source)
    if path.is_dir():
        paths = list_images(path)
        if not paths:
            raise UsageError(f"no images (.jpg, .png, ...) in folder {path}")
        return ImageFolderSource(paths, path)
    if not path.is_file():
        raise UsageError(f"source not found: {source} (expected a camera index, a video file or an image folder)")
    return _open_capture(str(path), f"video {path}",
                         f"cannot read video {path}: not a video OpenCV can decode, or it has no frames")
