"""Runtime harness: `load_bundle(path)` -> a Predictor with one interface for every runtime.

    from edge_sdk.runtime import load_bundle
    p = load_bundle("bundles/levit_128s-executorch-xnnpack-fp32", threads=1)
    logits = p.run(p.preprocess([bgr_image]))      # (1, classes) float32
    top5 = p.predict([bgr_image], top_k=5)         # [[{"index", "label", "prob"}, ...]]
"""
from __future__ import annotations

from .loader import COMPUTE_UNITS, load_bundle
from .predictor import Predictor, TorchPredictor, softmax

__all__ = ["COMPUTE_UNITS", "Predictor", "TorchPredictor", "load_bundle", "softmax"]
