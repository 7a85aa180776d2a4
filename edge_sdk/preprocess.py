"""Image preprocessing from a manifest input spec (or a model's deploy config), with OpenCV.

One function serves PyTorch reference, converters (calibration, parity) and every runtime, so the same image gives
the same tensor everywhere: BGR->RGB, resize the shorter side to `resize` (bilinear, like timm's eval transform),
center crop `crop`, scale to [0, 1], normalize with mean/std, HWC->CHW.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from edge_sdk.errors import EdgeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 BGR; EdgeError when missing or undecodable."""
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise EdgeError(f"cannot decode image {path}")
    return img


def resize_center_crop(img_bgr: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Resize the shorter side to `resize` then center-crop `crop`x`crop`; returns uint8 RGB HxWx3."""
    if img_bgr.ndim != 3 or img_bgr.shape[2] != 3:
        raise EdgeError(f"expected an HxWx3 image, got shape {img_bgr.shape}")
    h, w = img_bgr.shape[:2]
    scale = resize / min(h, w)
    nh, nw = max(crop, int(round(h * scale))), max(crop, int(round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img_bgr, (nw, nh), interpolation=interp)
    top, left = (nh - crop) // 2, (nw - crop) // 2
    img = img[top:top + crop, left:left + crop]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def normalize(rgb_u8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 RGB HxWx3 -> float32 CHW, (x/255 - mean) / std."""
    x = rgb_u8.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(img_bgr: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """One image -> normalized float32 (3, crop, crop), from a manifest input spec or `DeployConfig.to_dict()`.

    Accepts both spellings of the crop size (`crop` in manifests, `input_size` in deploy configs).
    """
    crop = int(spec.get("crop") or spec["input_size"])
    rgb = resize_center_crop(img_bgr, int(spec["resize"]), crop)
    return normalize(rgb, spec["mean"], spec["std"])


def preprocess_batch(images: Sequence[np.ndarray], spec: Mapping[str, Any]) -> np.ndarray:
    """Several BGR images -> (N, 3, crop, crop) float32."""
    return np.stack([preprocess(img, spec) for img in images])


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted (by suffix; decoding is checked when read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeError(f"image folder not found: {folder}")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
