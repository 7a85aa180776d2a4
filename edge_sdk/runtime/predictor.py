"""The Predictor: one interface over every runtime (ExecuTorch, LiteRT, Core ML, PyTorch reference).

Callers always speak the PyTorch model's language — float32 NCHW tensors normalized with the deploy mean/std — and
get float32 logits back. The Predictor translates to what the model file expects (NHWC layout, int8 quantized
input, 0-255 pixels for Core ML image inputs, batch 1) and back (dequantized output), so parity checks, benchmarks
and apps compare like with like.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge_sdk.errors import UsageError
from edge_sdk.manifest import InputSpec, Manifest, OutputSpec, Quantization
from edge_sdk.preprocess import preprocess_batch

RawRun = Callable[[np.ndarray], np.ndarray]

_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stable top-k probabilities."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def quantize(x: np.ndarray, q: Quantization, dtype: str) -> np.ndarray:
    """Affine quantization of a normalized tensor: q = round(x / scale) + zero_point, clipped to the dtype."""
    lo, hi = _INT_RANGES[dtype]
    v = np.round(x / q.scale) + q.zero_point
    return np.clip(v, lo, hi).astype(dtype)


def dequantize(v: np.ndarray, q: Quantization) -> np.ndarray:
    return ((v.astype(np.float32) - q.zero_point) * q.scale).astype(np.float32)


def _input_spec(spec: InputSpec | Mapping[str, Any]) -> InputSpec:
    return spec if isinstance(spec, InputSpec) else InputSpec.from_json(spec, source="Predictor input_spec")


def _output_spec(spec: OutputSpec | Mapping[str, Any]) -> OutputSpec:
    return spec if isinstance(spec, OutputSpec) else OutputSpec.from_json(spec, source="Predictor output_spec")


class Predictor:
    """Runs one model on normalized NCHW float32 input, whatever the model file's own layout and dtype.

    `raw_run` takes a tensor in the model file's layout/dtype with the model's batch size and returns its raw output.
    """

    def __init__(self, raw_run: RawRun, input_spec: InputSpec | Mapping[str, Any],
                 output_spec: OutputSpec | Mapping[str, Any], labels: Sequence[str] | None, target: str,
                 bundle: Any = None) -> None:
        self._raw_run = raw_run
        self.input_spec = _input_spec(input_spec)
        self.output_spec = _output_spec(output_spec)
        self.labels = list(labels) if labels else None
        self.target = target
        self.bundle = bundle

    # ---- shapes ------------------------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest | None:
        """The bundle's manifest (None for the PyTorch reference)."""
        return self.bundle.manifest if self.bundle is not None else None

    @property
    def input_size(self) -> int:
        return self.input_spec.crop

    @property
    def model_batch(self) -> int | None:
        """The batch size baked into the model file (None when it accepts any)."""
        return self.input_spec.batch

    def _check_input(self, x: Any) -> None:
        s = self.input_size
        if not isinstance(x, np.ndarray):
            raise UsageError(f"Predictor.run needs a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise UsageError(f"Predictor.run needs float32 input (normalized NCHW), got {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s) or x.shape[0] < 1:
            raise UsageError(f"Predictor.run needs shape (N, 3, {s}, {s}), got {tuple(x.shape)}")

    # ---- the model-file side -------------------------------------------------------------------------------------
    def _to_model_input(self, x: np.ndarray) -> np.ndarray:  # (B, 3, H, W) float32 normalized
        spec = self.input_spec
        if spec.normalization_in_model:  # the model wants 0-255 RGB pixels
            mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
            std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
            x = (x * std + mean) * 255.0
        if spec.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)  # (B, H, W, 3)
        dtype = spec.dtype
        if dtype in _INT_RANGES:
            if spec.quantization is not None:
                x = quantize(x, spec.quantization, dtype)
            else:  # uint8 pixels without quantization params: the model takes raw 0-255 values
                x = np.clip(np.round(x), *_INT_RANGES[dtype]).astype(dtype)
        return np.ascontiguousarray(x)

    def _from_model_output(self, y: np.ndarray) -> np.ndarray:
        q = self.output_spec.quantization
        y = dequantize(y, q) if q is not None else np.asarray(y, np.float32)
        return y.reshape(y.shape[0], -1)  # (B, classes)

    # ---- public API ----------------------------------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) normalized float32 -> (N, classes) float32 logits (or probabilities, per output kind)."""
        self._check_input(x)
        b = self.model_batch
        if b is None or b == x.shape[0]:
            return self._from_model_output(self._raw_run(self._to_model_input(x)))
        if b != 1:
            raise UsageError(f"this model takes batches of exactly {b}; got {x.shape[0]}")
        return np.concatenate([self._from_model_output(self._raw_run(self._to_model_input(x[i:i + 1])))
                               for i in range(x.shape[0])])

    def preprocess(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded BGR uint8 images -> normalized NCHW float32, exactly as the PyTorch model was fed."""
        if not len(images_bgr):
            raise UsageError("no images to preprocess")
        return preprocess_batch(images_bgr, self.input_spec)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        out = self.run(x)
        if self.output_spec.kind == "probabilities":
            return out.astype(np.float64)
        return softmax(out)

    def predict(self, images_bgr: Sequence[np.ndarray], top_k: int = 5) -> list[list[dict[str, Any]]]:
        """Top-k classes per image: [{"index", "label", "prob"}, ...] sorted by probability."""
        probs = self.probabilities(self.preprocess(images_bgr))
        return [self.top_k(p, top_k) for p in probs]

    def top_k(self, p: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
        """One probability row -> the k best classes with labels."""
        order = np.argsort(-p, kind="stable")[:max(1, k)]
        return [{"index": int(i), "label": self.label(int(i)), "prob": float(p[i])} for i in order]

    def label(self, index: int) -> str:
        if self.labels and index < len(self.labels):
            return self.labels[index]
        return f"class_{index}"

    def __repr__(self) -> str:
        where = f" {self.bundle.path}" if self.bundle is not None else ""
        return f"<Predictor {self.target}{where}>"


class TorchPredictor(Predictor):
    """The PyTorch reference with the same interface: a model plus its deploy config (same preprocessing)."""

    def __init__(self, model: Any, deploy: Any = None, labels: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        import torch
        if threads:
            torch.set_num_threads(int(threads))
        deploy = deploy if deploy is not None else model.deploy
        spec = InputSpec.from_deploy(deploy)  # shape None: any batch
        self.model = model.eval()

        def raw_run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return self.model(torch.from_numpy(x)).numpy().copy()

        labels = labels or (deploy.get("labels") if isinstance(deploy, Mapping) else getattr(deploy, "labels", None))
        classes = int(getattr(model, "num_classes", 0) or 0) or 1
        super().__init__(raw_run, spec, OutputSpec(shape=(-1, classes)), labels, target="pytorch")
