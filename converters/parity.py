"""Parity, the conversion side: run PyTorch once on real decoded images and seeded random inputs.

The result (`ReferenceSet`, stored in every bundle as reference.npz) is judged by `edge_sdk.parity.check`, the same
code `edge-sdk validate` runs later from the bundle alone — one parity path, judged on the runtime side.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.manifest import InputSpec
from edge_sdk.parity import ReferenceSet, crop_images, random_inputs

PARITY_IMAGES = 8  # real decoded images in every bundle's reference set
PARITY_RANDOM = 4  # seeded random-normal inputs
PARITY_SEED = 20240


def build_reference(run_torch: Callable[[np.ndarray], np.ndarray], images_bgr: Sequence[np.ndarray],
                    spec: InputSpec, seed: int = 0, n_random: int = 4) -> ReferenceSet:
    """Run the PyTorch model (`run_torch`: normalized NCHW -> logits) on images and seeded random inputs."""
    crops = crop_images(images_bgr, spec)
    ref = ReferenceSet(crops, np.zeros((0,)), seed, np.zeros((0,)))
    ref.image_logits = np.asarray(run_torch(ref.image_inputs(spec)), np.float32)
    ref.random_logits = np.asarray(run_torch(random_inputs(seed, n_random, crops.shape[1])), np.float32)
    return ref


def parity_images(count: int, size: int, seed: int = 1234) -> list[np.ndarray]:
    """Synthetic scenes round-tripped through PNG and OpenCV decoding: real decoded images, license-free."""
    import cv2
    from edge_sdk.data.synth import make_images
    images, _ = make_images(count, size=size, classes=10, seed=seed)
    out = []
    for img in images:
        ok, png = cv2.imencode(".png", img)
        if not ok:
            raise EdgeError("OpenCV could not encode a PNG")
        out.append(cv2.imdecode(png, cv2.IMREAD_COLOR))
    return out


def reference_for(model: Any) -> ReferenceSet:
    """The reference set of a (reparameterized, eval) PyTorch model with a deploy config: images + random inputs."""
    import torch
    spec = InputSpec.from_deploy(model.deploy)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])

    images = parity_images(PARITY_IMAGES, spec.resize)
    return build_reference(run, images, spec, seed=PARITY_SEED, n_random=PARITY_RANDOM)
