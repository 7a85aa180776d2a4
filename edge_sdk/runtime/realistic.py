"""Give an untrained model weights that behave like trained ones, for benchmarks and parity fixtures.

Why: random initialisation leaves exact zeros (zero-init BN gammas, attention-bias tables), and LiteRT then prunes
whole branches and reports latencies that are too good (docs/TOOLCHAIN.md). Filling every float parameter with
small non-zero values and setting BatchNorm statistics from a few train-mode passes on synthetic images keeps
activations of order one, so every op really runs and parity compares meaningful numbers.
"""
from __future__ import annotations

import numpy as np


def fill_realistic_weights(model, seed: int = 0, passes: int = 3, batch: int = 4):  # noqa: ANN001, ANN201
    """In place: no exact zeros, BN stats from synthetic images; returns the model in eval mode.

    The families' own initialisation is kept (it is tuned per block: e.g. trunc-normal 0.02 for transformer
    projections); only exact zeros (biases, zero-init tables) get small noise so nothing can be pruned. Replacing every
    weight with fan-in-scaled noise instead made MobileViTv2's multiplicative separable attention overflow to 1e7
    and beyond (int8 calibration then saw NaN ranges), which no trained model does.
    """
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            zeros = p == 0
            if zeros.any():
                scale = float(p.abs().max()) * 0.1 or 0.01
                p.copy_(torch.where(zeros, torch.randn(p.shape, generator=gen) * scale, p))
    size = model.deploy.input_size
    x = _synthetic_batch(model, size, batch, seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(x)
    return model.eval()


def _synthetic_batch(model, size: int, batch: int, seed: int):  # noqa: ANN001, ANN202
    """Normalized synthetic images (the procedural dataset when available, else smooth noise)."""
    import torch

    from edge_sdk.manifest import InputSpec
    from edge_sdk.preprocess import preprocess_batch
    try:
        from edge_sdk.data.synth import make_images
        images, _ = make_images(batch, size=size, seed=seed)
    except ImportError:
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    spec = InputSpec.from_deploy(model.deploy).replace(resize=size)  # images are already at the input size
    return torch.from_numpy(preprocess_batch(list(images), spec))
