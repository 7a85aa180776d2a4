"""RandAugment (Cubuk et al. 2020, https://arxiv.org/abs/1909.13719) on uint8 RGB images, in OpenCV/numpy.

Why not torchvision/timm: torchvision's compiled ops cannot load beside the CPU torch wheel (TOOLCHAIN.md).
Magnitude `m` is on timm's 0..10 scale with optional Gaussian jitter `m_std` ("rand-m9-mstd0.5" = m=9, m_std=0.5).
Every random choice comes from the `rng` passed in, so augmentation is reproducible and resumable.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

FILL = (128, 128, 128)
Op = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _signed(v: float, rng: np.random.Generator) -> float:
    return v if rng.random() < 0.5 else -v


def _affine(img: np.ndarray, mat: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=FILL)


def _blend(a: np.ndarray, b: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance semantics: factor 0 -> b, 1 -> a, >1 extrapolates."""
    return np.clip(b.astype(np.float32) + factor * (a.astype(np.float32) - b), 0, 255).astype(np.uint8)


def _gray(img: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def identity(img, m, rng): return img
def autocontrast(img, m, rng):
    lo, hi = img.reshape(-1, 3).min(0).astype(np.float32), img.reshape(-1, 3).max(0).astype(np.float32)
    scale = 255.0 / np.maximum(hi - lo, 1)
    return np.clip((img - lo) * scale, 0, 255).astype(np.uint8)
def equalize(img, m, rng): return np.stack([cv2.equalizeHist(np.ascontiguousarray(img[..., c])) for c in range(3)], 2)
def rotate(img, m, rng):
    h, w = img.shape[:2]
    return _affine(img, cv2.getRotationMatrix2D((w / 2, h / 2), _signed(30.0 * m / 10, rng), 1.0))
def solarize(img, m, rng):
    thr = 256 - int(256 * m / 10)
    return np.where(img >= thr, 255 - img, img).astype(np.uint8)
def posterize(img, m, rng):
    bits = max(1, 8 - int(4 * m / 10))
    mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
    return img & mask
def color(img, m, rng): return _blend(img, _gray(img), 1.0 + _signed(0.9 * m / 10, rng))
def contrast(img, m, rng):
    mean = np.full_like(img, int(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean()))
    return _blend(img, mean, 1.0 + _signed(0.9 * m / 10, rng))
def brightness(img, m, rng): return _blend(img, np.zeros_like(img), 1.0 + _signed(0.9 * m / 10, rng))
def sharpness(img, m, rng):
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
    return _blend(img, cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REPLICATE), 1.0 + _signed(0.9 * m / 10, rng))
def shear_x(img, m, rng): return _affine(img, np.float32([[1, _signed(0.3 * m / 10, rng), 0], [0, 1, 0]]))
def shear_y(img, m, rng): return _affine(img, np.float32([[1, 0, 0], [_signed(0.3 * m / 10, rng), 1, 0]]))
def translate_x(img, m, rng):
    return _affine(img, np.float32([[1, 0, _signed(0.45 * img.shape[1] * m / 10, rng)], [0, 1, 0]]))
def translate_y(img, m, rng):
    return _affine(img, np.float32([[1, 0, 0], [0, 1, _signed(0.45 * img.shape[0] * m / 10, rng)]]))


OPS: dict[str, Op] = {f.__name__: f for f in (
    identity, autocontrast, equalize, rotate, solarize, color, posterize, contrast, brightness, sharpness,
    shear_x, shear_y, translate_x, translate_y)}


def rand_augment(img: np.ndarray, n: int, m: float, m_std: float, rng: np.random.Generator) -> np.ndarray:
    """Apply `n` ops drawn uniformly (with replacement), each with probability 0.5 (timm's default)."""
    names = list(OPS)
    for idx in rng.integers(0, len(names), size=n):
        if rng.random() < 0.5:
            continue
        mag = float(np.clip(m + (rng.normal(0, m_std) if m_std > 0 else 0.0), 0, 10))
        img = OPS[names[idx]](img, mag, rng)
    return img
