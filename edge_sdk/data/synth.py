"""A procedural image-classification dataset whose classes need BOTH global shape and local texture.

Why: tests, calibration and laptop training need data that is small, deterministic, license-free and not
solvable by a pure CNN texture detector or a pure shape detector: class = (shape, texture), e.g.
`circle_stripes` vs `circle_dots` vs `square_stripes`. Colors, position, scale, rotation, texture phase/period and
noise are random, so neither color nor location carries the label; the texture is always a dark/light shade
of one hue (see `_texture_colors` for why).

Determinism: image `i` is drawn from `np.random.default_rng([seed, i])`, so `make_images(n)` is a prefix of
`make_images(m)` for m > n and the same seed always gives the same pixels.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.errors import UsageError

SHAPES = ("circle", "square", "triangle", "cross", "star", "hexagon")
TEXTURES = ("stripes", "dots", "checker", "grid", "waves")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)


def _class_pairs(classes: int) -> list[tuple[int, int]]:
    """(shape, texture) index pairs, growing a square grid so any N>=4 mixes several shapes AND textures.

    4 classes = 2 shapes x 2 textures; 9 = 3 x 3; 10 = 3 x 3 plus one more.
    """
    pairs = sorted(((s, t) for s in range(len(SHAPES)) for t in range(len(TEXTURES))),
                   key=lambda p: (max(p), p))
    return pairs[:classes]


def _check_classes(classes: int) -> None:
    if not isinstance(classes, int) or not 2 <= classes <= MAX_CLASSES:
        raise UsageError(f"classes must be an integer from 2 to {MAX_CLASSES}, got {classes!r}")


def class_names(classes: int) -> list[str]:
    """Folder/label names, e.g. ['circle_stripes', 'circle_dots', 'square_stripes', 'square_dots']."""
    _check_classes(classes)
    return [f"{SHAPES[s]}_{TEXTURES[t]}" for s, t in _class_pairs(classes)]


# ---- textures: float maps in [0, 1] on rotated pixel coordinates --------------------------------------------------

def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    unit = 1.5 * size / 64.0  # periods of 7-13 px at 64x64: survive a stride-2 stem without aliasing
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a = rng.uniform(0, np.pi)
    u = xx * np.cos(a) + yy * np.sin(a) + rng.uniform(0, 50)
    v = -xx * np.sin(a) + yy * np.cos(a) + rng.uniform(0, 50)
    if kind == "stripes":
        period = rng.uniform(5, 8) * unit
        return (np.mod(u, period) < period / 2).astype(np.float32)
    if kind == "dots":
        period = rng.uniform(6, 8) * unit
        du, dv = np.mod(u, period) - period / 2, np.mod(v, period) - period / 2
        return (du * du + dv * dv < (0.28 * period) ** 2).astype(np.float32)
    if kind == "checker":
        period = rng.uniform(6, 9) * unit
        return ((np.floor(u / (period / 2)) + np.floor(v / (period / 2))) % 2).astype(np.float32)
    if kind == "grid":
        period = rng.uniform(6, 9) * unit
        w = max(1.2, 1.6 * unit)
        return ((np.mod(u, period) < w) | (np.mod(v, period) < w)).astype(np.float32)
    if kind == "waves":  # zig-zag stripes: same frequency as "stripes" but bent, a local-orientation cue
        period = rng.uniform(5, 8) * unit
        bend = np.abs(np.mod(v, 2 * period) - period) * rng.uniform(0.8, 1.2)
        return (np.mod(u + bend, period) < period / 2).astype(np.float32)
    raise ValueError(kind)


# ---- shapes: anti-aliased masks in [0, 1] -------------------------------------------------------------------------

def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if kind == "square":
        k, radii = 4, [r * 0.95] * 4
    elif kind == "triangle":
        k, radii = 3, [r * 1.1] * 3
    elif kind == "hexagon":
        k, radii = 6, [r] * 6
    elif kind == "star":
        k, radii = 10, [r * 1.1 if i % 2 == 0 else r * 0.45 for i in range(10)]
    elif kind == "cross":
        w = 0.36 * r
        pts = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w),
               (-w, w), (-w, r)]
        c, s = np.cos(angle), np.sin(angle)
        return np.array([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], np.float32)
    else:
        raise ValueError(kind)
    th = angle + np.arange(k) * 2 * np.pi / k
    return np.stack([cx + np.asarray(radii) * np.cos(th), cy + np.asarray(radii) * np.sin(th)], 1).astype(np.float32)


def _mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    ss = 4  # draw at 4x and downsample: anti-aliased edges without cv2.LINE_AA's 1-px quirks
    r = rng.uniform(0.28, 0.4) * size
    cx, cy = (rng.uniform(r, size - r) for _ in range(2))
    canvas = np.zeros((size * ss, size * ss), np.uint8)
    if kind == "circle":
        rx, ry = r * rng.uniform(0.85, 1.0), r * rng.uniform(0.85, 1.0)  # slight ellipse: not a texture cue
        cv2.ellipse(canvas, (int(cx * ss), int(cy * ss)), (int(rx * ss), int(ry * ss)),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        pts = _polygon(kind, cx, cy, r, rng.uniform(0, 2 * np.pi)) * ss
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 255)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _texture_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random color and a much darker shade of it, in random order: the texture is a LUMINANCE pattern.

    Why: with two independent random colors (the first version) every image drew its texture edges along a new
    direction in RGB space, and the 15-70k-parameter test models, whose stride-2 stems start with 2-8 channels,
    memorized the colors of a few hundred training images instead of learning color-invariant texture
    detectors (train top-1 100%, val at chance on stripes vs dots). A dark/light contrast of one random hue
    keeps color uninformative while every conv sees the texture as the same kind of edge.
    """
    bright = rng.uniform(100, 255, 3).astype(np.float32)
    dark = bright * np.float32(rng.uniform(0.15, 0.4))
    return (bright, dark) if rng.random() < 0.5 else (dark, bright)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth, muted random color gradient: no texture, so only the shape carries texture."""
    corners = rng.uniform(60, 196, (2, 2, 3)).astype(np.float32)
    return cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)  # (size, size, 3)


def _render(shape: str, texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    bg = _background(size, rng)
    c0, c1 = _texture_colors(rng)
    t = _texture(texture, size, rng)[..., None]  # (H, W, 1)
    fg = c0 * (1 - t) + c1 * t
    m = _mask(shape, size, rng)[..., None]
    img = bg * (1 - m) + fg * m + rng.normal(0, rng.uniform(3, 10), (size, size, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)  # BGR order is arbitrary: colors are random


def make_images(n: int, size: int = 64, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (N, size, size, 3) uint8 BGR and labels (N,) int64; label of image i is `i % classes`."""
    _check_classes(classes)
    if n < 0 or size < 16:
        raise UsageError(f"need n >= 0 and size >= 16, got n={n}, size={size}")
    pairs = _class_pairs(classes)
    labels = np.arange(n, dtype=np.int64) % classes
    images = np.empty((n, size, size, 3), np.uint8)
    for i, y in enumerate(labels):
        s, t = pairs[int(y)]
        images[i] = _render(SHAPES[s], TEXTURES[t], size, np.random.default_rng([seed, i]))
    return images, labels


def write_imagefolder(out: Path, classes: int = 10, per_class: int = 20, seed: int = 0, size: int = 64) -> Path:
    """Write `classes` x `per_class` PNGs as `out/<class_name>/<class_name>_00000.png`; returns `out`.

    Written to a temp folder beside `out` then renamed, so an interrupted run never leaves half a dataset.
    An existing non-empty `out` is refused rather than overwritten.
    """
    out = Path(out)
    if per_class < 1:
        raise UsageError(f"per_class must be >= 1, got {per_class}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not empty; choose a new folder")
    names = class_names(classes)
    images, labels = make_images(classes * per_class, size=size, classes=classes, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        counts = [0] * classes
        for img, y in zip(images, labels):
            folder = tmp / names[y]
            folder.mkdir(exist_ok=True)
            if not cv2.imwrite(str(folder / f"{names[y]}_{counts[y]:05d}.png"), img):
                raise OSError(f"cannot write PNG under {folder}")
            counts[y] += 1
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a dataset folder should be readable like any other
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
