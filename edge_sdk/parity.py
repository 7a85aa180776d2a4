"""Parity, the judging half: does a bundle compute what the PyTorch model computed? One judge for every target.

Why here (not in converters): `edge-sdk validate` re-runs parity from the bundle's `reference.npz` alone, so judging
must work on the light install (no torch, no converters). The conversion side (edge_sdk.converters.parity) runs
PyTorch once to build the reference set; right after conversion the pipeline opens the temp bundle with
`edge_sdk.runtime.load_bundle` exactly as an app would and calls the same `check` as validate does.

Inputs: real decoded images (synthetic scenes written as PNG and decoded with OpenCV, or the user's folder),
preprocessed with `edge_sdk.preprocess`, AND seeded standard-normal tensors (they reach corners of the input space
images do not).

Metrics per input set: max-abs error, its ratio to max|reference logit|, mean cosine similarity, top-1 agreement.
Thresholds (the pass/fail rule) depend on precision:
- fp32: max-abs <= 1e-4 x max|logit| on images AND random inputs.
- fp16 / int8 / mixed / compressed: on images only (random inputs lie outside the calibration range, so they are
  reported but not judged): mean cosine over the images >= min_cosine (fp16 0.999, int8/mixed 0.97) and top-1
  agreement >= 98% on *decisive* images. The worst image's cosine is reported too (`cosine_min`).

Why "decisive": with random (untrained) weights, logits are often nearly tied, and the top-1 of two correct
computations can differ by rounding alone. An image is decisive when the reference top-1 leads the runner-up by at
least `margin` x (max - min) of its logits (default 5%). Plain agreement over all images is reported too, next to
the number of decisive images, so nothing is hidden; trained weights make almost every image decisive. When no
image is decisive (typical of untrained tiny models) top-1 is not judged and cosine alone decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.manifest import InputSpec

REFERENCE_FILE = "reference.npz"
FP32 = ("fp32",)
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_ratio": 1e-4},
    "fp16": {"min_cosine": 0.999, "min_top1": 0.98},
    "int8": {"min_cosine": 0.97, "min_top1": 0.98},
    "mixed": {"min_cosine": 0.97, "min_top1": 0.98},
}
LOSSY_DEFAULT = {"min_cosine": 0.95, "min_top1": 0.98}  # other lossy names (dynamic_int8, palette6, ...)
MARGIN = 0.05


def thresholds_for(precision: str) -> dict[str, float]:
    return dict(DEFAULT_THRESHOLDS.get(precision, LOSSY_DEFAULT))


# ---- the reference set stored in a bundle ---------------------------------------------------------------------

@dataclass
class ReferenceSet:
    """What validate needs to re-check a bundle without the PyTorch model (a few hundred kB at most).

    images: (K, crop, crop, 3) uint8 RGB, already resized and center-cropped (normalization is applied from the
    manifest, so a changed mean/std in the manifest is caught). image_logits: (K, C) PyTorch logits.
    random inputs are regenerated from `seed` (standard normal, (R, 3, crop, crop)); random_logits: (R, C).
    """

    images: np.ndarray
    image_logits: np.ndarray
    seed: int
    random_logits: np.ndarray

    def image_inputs(self, spec: InputSpec) -> np.ndarray:
        """Normalized with the MANIFEST's mean/std, so a changed mean/std in the manifest is caught."""
        from edge_sdk.preprocess import normalize
        return np.stack([normalize(img, spec.mean, spec.std) for img in self.images])  # (K, 3, H, W)

    def random_inputs(self) -> np.ndarray:
        k, h, w, _ = self.images.shape
        return random_inputs(self.seed, len(self.random_logits), h)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, images=self.images, image_logits=self.image_logits.astype(np.float32),
                            seed=np.int64(self.seed), random_logits=self.random_logits.astype(np.float32))

    @classmethod
    def load(cls, path: Path) -> "ReferenceSet":
        try:
            with np.load(path, allow_pickle=False) as z:
                ref = cls(z["images"], z["image_logits"], int(z["seed"]), z["random_logits"])
        except FileNotFoundError:
            raise EdgeError(f"{path} not found: this bundle has no parity reference set") from None
        except (KeyError, ValueError, OSError) as exc:
            raise EdgeError(f"{path} is not a valid reference set: {exc}") from None
        if ref.images.ndim != 4 or ref.images.dtype != np.uint8 or len(ref.images) != len(ref.image_logits):
            raise EdgeError(f"{path} is not a valid reference set (shapes {ref.images.shape}, "
                            f"{ref.image_logits.shape})")
        return ref


def random_inputs(seed: int, count: int, size: int) -> np.ndarray:
    """Seeded standard-normal (count, 3, size, size) float32: the same on every machine (numpy PCG64)."""
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)


def crop_images(images_bgr: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Decoded BGR images -> (K, crop, crop, 3) uint8 RGB via edge_sdk.preprocess's resize + center crop."""
    from edge_sdk.preprocess import resize_center_crop
    return np.stack([resize_center_crop(img, spec.resize, spec.crop) for img in images_bgr])


# ---- metrics and the verdict ------------------------------------------------------------------------------------

def compare(ref: np.ndarray, out: np.ndarray, margin: float = MARGIN) -> dict[str, Any]:
    """Metrics of `out` against `ref`, both (N, C)."""
    if ref.shape != out.shape:
        raise EdgeError(f"output shape {tuple(out.shape)} differs from the reference {tuple(ref.shape)}")
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    nonfinite = {"nonfinite_reference": int((~np.isfinite(ref64)).sum()),
                 "nonfinite_output": int((~np.isfinite(out64)).sum())}
    err = float(np.abs(ref64 - out64).max())
    scale = float(np.abs(ref64).max()) or 1.0
    cos = (ref64 * out64).sum(1) / (np.linalg.norm(ref64, axis=1) * np.linalg.norm(out64, axis=1) + 1e-30)
    agree = ref64.argmax(1) == out64.argmax(1)
    top2 = np.sort(ref64, axis=1)[:, -2:] if ref.shape[1] > 1 else np.concatenate([ref64, ref64 - 1], 1)
    spread = ref64.max(1) - ref64.min(1) + 1e-30
    decisive = (top2[:, 1] - top2[:, 0]) >= margin * spread
    return {"count": int(len(ref)), "max_abs": err, "max_abs_ratio": err / scale, "max_abs_logit": scale,
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "top1_agreement": float(agree.mean()),
            "decisive": int(decisive.sum()),
            "top1_agreement_decisive": float(agree[decisive].mean()) if decisive.any() else None, **nonfinite}


def verdict(precision: str, images: dict[str, Any], random: dict[str, Any],
            thresholds: Mapping[str, float]) -> list[str]:
    """Human-readable reasons the metrics miss the thresholds (empty list: passed)."""
    fails = []
    for name, m in (("images", images), ("random", random)):
        # NaN compares false with every threshold, so non-finite values must fail explicitly.
        if m.get("nonfinite_reference"):
            fails.append(f"{name}: the PyTorch reference has {m['nonfinite_reference']} non-finite logits "
                         "(weights overflow: parity is meaningless)")
        if m.get("nonfinite_output"):
            fails.append(f"{name}: the converted model produced {m['nonfinite_output']} non-finite logits")
    if "max_abs_ratio" in thresholds:
        for name, m in (("images", images), ("random", random)):
            if m["max_abs_ratio"] > thresholds["max_abs_ratio"]:
                fails.append(f"{name}: max-abs error {m['max_abs']:.3g} is {m['max_abs_ratio']:.2e} x max|logit| "
                             f"(limit {thresholds['max_abs_ratio']:.0e})")
    if "min_cosine" in thresholds and images["cosine_mean"] < thresholds["min_cosine"]:
        fails.append(f"images: mean cosine {images['cosine_mean']:.5f} < {thresholds['min_cosine']}")
    if "min_top1" in thresholds:
        agree = images["top1_agreement_decisive"]  # None: every image is a near-tie, top-1 is not judged
        if agree is not None and agree < thresholds["min_top1"]:
            fails.append(f"images: top-1 agreement {agree:.1%} < {thresholds['min_top1']:.0%}")
    return fails


def check(predictor: Any, reference: ReferenceSet, precision: str,
          thresholds: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Run `predictor` (a runtime Predictor) on the reference inputs and judge it. Returns the manifest's parity."""
    thresholds = dict(thresholds or thresholds_for(precision))
    spec = predictor.input_spec
    ref_img, ref_rnd = reference.image_logits, reference.random_logits
    out_img = predictor.run(reference.image_inputs(spec))
    out_rnd = predictor.run(reference.random_inputs())
    if predictor.output_spec.kind == "probabilities":  # e.g. a Core ML classifier: compare probabilities
        from edge_sdk.runtime.predictor import softmax
        ref_img, ref_rnd = softmax(ref_img).astype(np.float32), softmax(ref_rnd).astype(np.float32)
    images, random = compare(ref_img, out_img), compare(ref_rnd, out_rnd)
    fails = verdict(precision, images, random, thresholds)
    return {"status": "failed" if fails else "passed", "precision": precision, "thresholds": thresholds,
            "margin": MARGIN, "images": images, "random": random, "failures": fails}


def not_run(reason: str) -> dict[str, Any]:
    return {"status": "not_run", "reason": reason}


def summary(parity: Mapping[str, Any]) -> str:
    """One short cell for tables: 'passed (err 3e-07)' / 'passed (top1 100%, cos 0.9998)' / 'not_run'."""
    status = parity.get("status", "?")
    if status == "not_run":
        return "not_run"
    img = parity.get("images") or {}
    if "max_abs_ratio" in (parity.get("thresholds") or {}):
        return f"{status} (rel err {img.get('max_abs_ratio', float('nan')):.1e})"
    cos = f"cos {img.get('cosine_min', float('nan')):.4f}"
    if img.get("decisive") == 0:  # near-tied logits (random weights): top-1 is not judged, only the cosine
        return f"{status} (top1 not judged: 0 decisive, {cos})"
    agree = img.get("top1_agreement_decisive")
    agree = img.get("top1_agreement") if agree is None else agree
    return f"{status} (top1 {agree:.0%}, {cos})"
