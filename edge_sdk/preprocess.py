"""Image preprocessing from an `InputSpec` (a manifest's, or one built from a model's deploy config), with OpenCV.

One function serves PyTorch reference, converters (calibration, parity) and every runtime, so the same image gives
the same tensor everywhere: BGR->RGB, resize the shorter side to `resize` (bilinear, like timm's eval transform),
center crop `crop`, scale to [0, 1], normalize with mean/std, HWC->CHW.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.manifest import InputSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


MAX_IMAGE_PIXELS = 64_000_000  # 64 MP (e.g. 8000x8000, ~190 MB decoded); EDGE_SDK_MAX_IMAGE_PIXELS overrides


def max_image_pixels() -> int:
    """The pixel limit `read_image` enforces: EDGE_SDK_MAX_IMAGE_PIXELS if set (an integer >= 1), else 64 MP."""
    raw = os.environ.get("EDGE_SDK_MAX_IMAGE_PIXELS")
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise EdgeError(f"EDGE_SDK_MAX_IMAGE_PIXELS must be an integer >= 1, got {raw!r}")
    return value


def image_header_size(path: Path) -> tuple[int, str] | None:
    """(pixels, "WxH") from the file's header without decoding the pixels (Pillow opens lazily); None when Pillow
    does not know the format (OpenCV may still decode it, under its own pixel limit)."""
    import warnings

    from PIL import Image, UnidentifiedImageError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: the limit below is ours
        try:
            with Image.open(path) as im:
                w, h = int(im.size[0]), int(im.size[1])
                return w * h, f"{w}x{h}"
        except Image.DecompressionBombError as exc:  # Pillow's hard limit (2x 89 MP), far over ours
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else 2**62
            return pixels, f"{pixels} pixels"
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error, EOFError):
            return None


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 BGR; EdgeError (one line) when it cannot or should not be decoded.

    The header's size is read first and images over `max_pixels` (default `max_image_pixels()`) are refused before
    any pixel is decoded: a 92-byte PNG can claim 100000x100000. 16-bit, grey, palette, alpha and CMYK files come
    out as 8-bit BGR (OpenCV's IMREAD_COLOR conversion).
    """
    path = Path(path)
    if path.is_dir():
        raise EdgeError(f"{path} is a directory, not an image file (pass the image files inside it)")
    if not path.is_file():
        raise EdgeError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise EdgeError(f"cannot decode image {path}: the file is empty")
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    size = image_header_size(path)
    if size is not None:
        pixels, shown = size
        if pixels < 1:
            raise EdgeError(f"cannot decode image {path}: its header says {shown} pixels")
        if pixels > limit:
            raise EdgeError(f"image {path} is {shown} ({pixels / 1e6:.0f} megapixels), over the limit of "
                            f"{limit / 1e6:g} megapixels; set EDGE_SDK_MAX_IMAGE_PIXELS to allow more")
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise EdgeError(f"cannot decode image {path}: {detail[:200]}") from None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise EdgeError(f"cannot decode image {path} (truncated, corrupt, or a format OpenCV cannot read)")
    if img.shape[0] * img.shape[1] > limit:  # a format Pillow could not size
        raise EdgeError(f"image {path} is {img.shape[1]}x{img.shape[0]}, over the limit of {limit / 1e6:g} "
                        "megapixels; set EDGE_SDK_MAX_IMAGE_PIXELS to allow more")
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


def as_input_spec(spec: InputSpec | Any) -> InputSpec:
    """An InputSpec as is; a DeployConfig (or its `to_dict()`) through `InputSpec.from_deploy`, the one place where
    a deploy config's `input_size` becomes the crop."""
    return spec if isinstance(spec, InputSpec) else InputSpec.from_deploy(spec)


def preprocess(img_bgr: np.ndarray, spec: InputSpec | Any) -> np.ndarray:
    """One image -> normalized float32 (3, crop, crop) as the spec says (see `as_input_spec` for a deploy config)."""
    spec = as_input_spec(spec)
    rgb = resize_center_crop(img_bgr, spec.resize, spec.crop)
    return normalize(rgb, spec.mean, spec.std)


def preprocess_batch(images: Sequence[np.ndarray], spec: InputSpec | Any) -> np.ndarray:
    """Several BGR images -> (N, 3, crop, crop) float32."""
    spec = as_input_spec(spec)
    return np.stack([preprocess(img, spec) for img in images])


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted (by suffix; decoding is checked when read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeError(f"image folder not found: {folder}")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
