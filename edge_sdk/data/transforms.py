"""Train and eval transforms: BGR uint8 image -> normalized float32 CHW, OpenCV/numpy only.

Eval uses `edge_sdk.preprocess.preprocess` (the same function every runtime uses), so the accuracy measured in
training is the accuracy of the deployed preprocessing. Train follows the DeiT/timm ImageNet recipe: random
resized crop, horizontal flip, RandAugment, normalize, random erasing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from edge_sdk.preprocess import normalize, preprocess

from .randaugment import rand_augment


def random_resized_crop(img: np.ndarray, size: int, scale: tuple[float, float], ratio: tuple[float, float],
                        rng: np.random.Generator) -> np.ndarray:
    """Inception-style crop: area fraction in `scale`, log-uniform aspect in `ratio`, resized to size x size."""
    h, w = img.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # fall back to a center crop of the whole image (torchvision's behaviour)
        ch, cw = h, w
        top, left = 0, 0
    crop = img[top:top + ch, left:left + cw]
    interp = cv2.INTER_AREA if ch * cw > size * size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def random_erasing(x: np.ndarray, prob: float, rng: np.random.Generator,
                   scale: tuple[float, float] = (0.02, 1 / 3), ratio: tuple[float, float] = (0.3, 3.3)) -> np.ndarray:
    """Zhong et al. 2017 on a normalized CHW array: one rectangle filled with N(0, 1) noise (timm 'pixel' mode)."""
    if prob <= 0 or rng.random() >= prob:
        return x
    _, h, w = x.shape
    for _ in range(10):
        target = h * w * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            x[:, top:top + eh, left:left + ew] = rng.standard_normal((x.shape[0], eh, ew)).astype(np.float32)
            break
    return x


@dataclass(frozen=True)
class TrainAug:
    """Augmentation settings (recipe keys of the same names)."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_scale_min: float = 0.08
    hflip: float = 0.5
    randaug_n: int = 2
    randaug_m: float = 9.0
    randaug_mstd: float = 0.5
    reprob: float = 0.25

    def __call__(self, img_bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = random_resized_crop(img_bgr, self.input_size, (self.crop_scale_min, 1.0), (3 / 4, 4 / 3), rng)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if rng.random() < self.hflip:
            img = np.ascontiguousarray(img[:, ::-1])
        if self.randaug_n > 0:
            img = rand_augment(img, self.randaug_n, self.randaug_m, self.randaug_mstd, rng)
        return random_erasing(normalize(img, self.mean, self.std), self.reprob, rng)


class EvalTransform:
    """Deploy preprocessing from a model's deploy config (resize shorter side, center crop, normalize)."""

    def __init__(self, deploy: Mapping[str, Any]) -> None:
        self.spec = dict(deploy)

    def __call__(self, img_bgr: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return preprocess(img_bgr, self.spec)
