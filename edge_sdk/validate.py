"""Validate a bundle from the bundle alone: integrity, parity against its stored reference set, accuracy on a folder.

Nothing here needs the Python model class: the reference logits were computed by PyTorch at conversion time and
stored in `reference.npz`; the same `edge_sdk.parity` code judges them, so `convert` and `validate` can never
disagree about what "passed" means. Nothing here imports torch or the converters: a .tflite bundle validates on the
light install.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge_sdk.errors import EdgeError, UsageError


def validate_bundle(path: str | Path, images: Path | None = None, thresholds: Mapping[str, float] | None = None,
                    min_accuracy: float | None = None, threads: int | None = None) -> dict[str, Any]:
    """Return {bundle, target, backend, precision, parity, accuracy, passed, failures}.

    Integrity problems (bad manifest, sha256 mismatch, missing files) raise EdgeError; missed thresholds are
    reported in `failures` with `passed: False` so the caller can print them all before exiting 1.
    """
    from edge_sdk.bundle import inside, read_bundle
    from edge_sdk.parity import REFERENCE_FILE, ReferenceSet, check, not_run, thresholds_for
    bundle = read_bundle(path, verify=True)
    m = bundle.manifest
    precision = m.precision
    limits = {**thresholds_for(precision), **(thresholds or {})}
    report: dict[str, Any] = {"bundle": str(bundle.path), "target": m.target, "backend": m.backend,
                              "precision": precision, "accuracy": None, "failures": []}
    predictor, reason = _open(bundle.path, threads)
    if predictor is None:
        report["parity"] = not_run(reason)
    else:
        ref = ReferenceSet.load(inside(bundle.path, m.reference or REFERENCE_FILE))
        report["parity"] = check(predictor, ref, precision, limits)
        report["failures"] += report["parity"]["failures"]
        if images is not None:
            report["accuracy"] = accuracy(predictor, images)
            acc = report["accuracy"]["top1"]
            if min_accuracy is not None and acc < min_accuracy:
                report["failures"].append(f"accuracy {acc:.1%} < {min_accuracy:.1%} on {images}")
    if images is not None and predictor is None:
        report["accuracy"] = {"status": "not_run", "reason": reason}
    report["passed"] = not report["failures"]
    return report


def _open(path: Path, threads: int | None) -> tuple[Any, str]:
    """The runtime Predictor, or (None, why) when this machine has no runtime for the bundle (Core ML on Linux)."""
    from edge_sdk.runtime import load_bundle
    try:
        return load_bundle(path, threads=threads), ""
    except EdgeError as exc:
        if str(exc).startswith("needs macOS"):
            return None, str(exc)
        raise


def accuracy(predictor: Any, folder: Path, batch: int = 16) -> dict[str, Any]:
    """Top-1/top-5 accuracy on an ImageFolder whose class folder names are labels of the bundle."""
    from edge_sdk.data.folder import scan_imagefolder
    from edge_sdk.preprocess import read_image
    classes, samples = scan_imagefolder(folder)
    labels = predictor.labels or []
    missing = [c for c in classes if c not in labels]
    if missing:
        raise UsageError(f"class folder(s) {', '.join(missing[:5])} in {folder} are not labels of this bundle "
                         f"(labels.txt has {', '.join(labels[:5])}{' ...' if len(labels) > 5 else ''})")
    target_idx = np.array([labels.index(classes[i]) for _, i in samples])
    top1 = top5 = 0
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        out = predictor.run(predictor.preprocess([read_image(p) for p, _ in chunk]))  # (B, C)
        order = np.argsort(-out, axis=1)[:, :5]
        truth = target_idx[start:start + len(chunk)]
        top1 += int((order[:, 0] == truth).sum())
        top5 += int((order == truth[:, None]).any(1).sum())
    n = len(samples)
    return {"images": n, "classes": len(classes), "top1": top1 / n, "top5": top5 / n, "folder": str(folder)}
