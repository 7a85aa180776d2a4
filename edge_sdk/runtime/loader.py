"""`load_bundle`: read and verify a bundle, open its model file with the matching runtime, wrap it in a Predictor."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_sdk.bundle import Bundle, read_bundle
from edge_sdk.errors import EdgeError, UsageError

from . import engines
from .predictor import Predictor, RawRun

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


def load_bundle(path: str | Path, threads: int | None = None, compute_units: str = "ALL",
                verify: bool = True) -> Predictor:
    """Open a bundle exactly as an app would and return its Predictor.

    `verify` checks the manifest schema, safe paths and the model file's sha256 before any native code reads it.
    `threads` sizes the CPU thread pool (ExecuTorch: once per process, before the first load). `compute_units`
    selects Core ML hardware (macOS only).
    """
    if threads is not None and int(threads) < 1:
        raise UsageError(f"threads must be >= 1, got {threads}")
    if compute_units.upper() not in COMPUTE_UNITS:
        raise UsageError(f"unknown compute units {compute_units!r}; use one of {', '.join(COMPUTE_UNITS)}")
    bundle = read_bundle(path, verify=verify)
    opener = _OPENERS.get(bundle.target)
    if opener is None:
        raise EdgeError(f"bundle target {bundle.target!r} has no runtime here; known: {', '.join(_OPENERS)}")
    raw_run = opener(bundle, threads, compute_units.upper())
    m = bundle.manifest
    return Predictor(raw_run, m.input, m.output, bundle.labels, target=m.target, bundle=bundle)


def _open_executorch(bundle: Bundle, threads: int | None, compute_units: str) -> RawRun:
    if bundle.manifest.backend == "coreml":
        raise EdgeError("needs macOS/iOS: this .pte is delegated to Core ML, which ExecuTorch's Linux runtime does "
                        "not include; run it on Apple hardware or convert with --backend xnnpack")
    try:  # the light install has neither: ExecuTorch's Python runtime is built on torch
        import executorch.runtime  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise EdgeError(f"{bundle.path.name} is an ExecuTorch .pte and ExecuTorch's Python runtime needs torch "
                        f"({exc}): pip install 'edge-sdk[convert]'") from None
    return engines.open_executorch(bundle.model_file, threads=threads)


def _open_tflite(bundle: Bundle, threads: int | None, compute_units: str) -> RawRun:
    return engines.open_tflite(bundle.model_file, threads=threads)


def _open_coreml(bundle: Bundle, threads: int | None, compute_units: str) -> RawRun:
    predict = engines.open_coreml(bundle.model_file, compute_units=compute_units)  # EdgeError off macOS
    spec_in, spec_out = bundle.manifest.input, bundle.manifest.output
    return _coreml_runner(predict, spec_in.name, spec_out.name, spec_in.normalization_in_model)


def _coreml_runner(predict: Callable[[dict], dict], in_name: str | None, out_name: str | None,
                   image_input: bool) -> RawRun:
    """Core ML image inputs take PIL images of 0-255 RGB pixels; tensor inputs take numpy arrays."""
    def run(x: np.ndarray) -> np.ndarray:  # (1, 3, H, W)
        if image_input:
            from PIL import Image
            pixels = np.clip(np.round(x[0].transpose(1, 2, 0)), 0, 255).astype(np.uint8)  # (H, W, 3)
            value: Any = Image.fromarray(pixels, "RGB")
        else:
            value = x
        out = predict({in_name or "input": value})
        y = out[out_name] if out_name in out else next(iter(out.values()))
        return np.asarray(y, np.float32).reshape(1, -1)

    return run


_OPENERS: dict[str, Callable[[Bundle, int | None, str], RawRun]] = {
    "executorch": _open_executorch, "tflite": _open_tflite, "coreml": _open_coreml,
}
