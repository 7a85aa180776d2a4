"""TFLite / LiteRT `.tflite` target: fp32, fp16 weights, dynamic-range int8 and full-integer int8, NCHW or NHWC.

Steps (each a short function): convert the eval model with litert-torch to an fp32 flatbuffer -> for the reduced
precisions, rewrite that flatbuffer with ai-edge-quantizer recipes -> write the file -> read back its I/O spec and
the delegate-compatibility report (converters/tflite_report.py).

Why the quantizer works on the fp32 .tflite instead of litert-torch's own PT2E quantization: litert-torch's static
int8 produced files that fail `allocate_tensors` at SOFTMAX (output scale not 1/256, TOOLCHAIN.md), while
ai-edge-quantizer recipes on the fp32 file load and run in ai-edge-litert for every precision here.

int8 is true full-integer: the quantizer makes the model's input and output int8 tensors (measured: no QUANTIZE /
DEQUANTIZE at the boundary), so a camera pipeline feeds int8 directly. The manifest records the input
quantization {scale, zero_point} applied to the NORMALIZED value (q = round(x / scale) + zero_point) and the
output quantization used to recover logits.
"""
from __future__ import annotations

import contextlib
import io
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from edge_sdk.bundle import atomic_write
from edge_sdk.errors import EdgeError

from .base import Artifact, ConvertOptions, Target, register_target

FILE_NAME = "model.tflite"
SIGNATURE = "serving_default"


@contextlib.contextmanager
def _quiet_litert() -> Iterator[None]:
    """litert-torch prints a progress tree for every conversion; the pipeline draws its own progress."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()  # (B, C, H, W) -> (B, H, W, C)


def convert_fp32(model: torch.nn.Module, example: torch.Tensor, nhwc: bool) -> bytes:
    """litert-torch conversion. NHWC wraps the model so the file's input is (1, H, W, 3) and its first op is a conv,
    not a TRANSPOSE (Android camera frames are HWC)."""
    import litert_torch
    model = model.eval()
    if nhwc:
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        example = to_nhwc(example)
    try:
        with _quiet_litert(), torch.no_grad():
            return bytes(litert_torch.convert(model, (example,)).model_content())
    except Exception as exc:
        raise EdgeError(f"litert-torch could not convert the model: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _recipe(precision: str) -> Any:
    """ai-edge-quantizer recipe per precision (see ai_edge_quantizer/recipe.py)."""
    from ai_edge_quantizer import qtyping, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    if precision == "fp16":  # weights stored fp16 + DEQUANTIZE (GPU delegate reads them as fp16 directly)
        rm = recipe_manager.RecipeManager()
        rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                  algorithm_key=AlgorithmName.FLOAT_CASTING)
        return rm.get_quantization_recipe()
    if precision == "dynamic_int8":  # int8 per-channel weights, activations quantized on the fly
        return recipe.dynamic_wi8_afp32()
    if precision == "int8":  # int8 per-channel weights + int8 activations from calibration
        return recipe.static_wi8_ai8()
    raise EdgeError(f"internal: no quantization recipe for precision {precision}")


def calibration_set(calib: Callable[[], list[torch.Tensor]], input_name: str, nhwc: bool) -> list[dict]:
    """Calibration batches split into the file's batch-1 inputs, in the file's layout."""
    samples = []
    for batch in calib():
        for x in batch.split(1):  # (1, 3, H, W)
            x = to_nhwc(x) if nhwc else x
            samples.append({input_name: x.detach().float().numpy().astype(np.float32)})
    if not samples:
        raise EdgeError("int8 calibration needs images, but the calibration set is empty")
    return samples


def _input_name(fp32: bytes) -> str:
    from ai_edge_litert.interpreter import Interpreter
    sig = Interpreter(model_content=fp32).get_signature_list()
    return sig[SIGNATURE]["inputs"][0]


def quantize(fp32: bytes, precision: str, calib: Callable[[], list[torch.Tensor]], nhwc: bool) -> bytes:
    """Apply the precision's recipe to the fp32 flatbuffer."""
    from ai_edge_quantizer import quantizer
    q = quantizer.Quantizer(bytearray(fp32))
    q.load_quantization_recipe(_recipe(precision))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the quantizer draws tqdm bars on stderr
            result = None
            if q.need_calibration:  # a property
                data = {SIGNATURE: calibration_set(calib, _input_name(fp32), nhwc)}
                result = q.calibrate(data, num_threads=1)
            out = q.quantize(result, enable_progress_bar=False, enable_progress_report=False)
    except EdgeError:
        raise
    except Exception as exc:
        raise EdgeError(f"ai-edge-quantizer failed for {precision}: {_first_line(exc)}") from exc
    return bytes(out.quantized_model)


def build(model: torch.nn.Module, example: torch.Tensor, precision: str, nhwc: bool,
          calib: Callable[[], list[torch.Tensor]]) -> bytes:
    """The .tflite bytes for one precision (fp32 first, then a quantizer pass for the others)."""
    fp32 = convert_fp32(model, example, nhwc)
    return fp32 if precision == "fp32" else quantize(fp32, precision, calib, nhwc)


def _quant(detail: dict) -> dict[str, float] | None:
    scale, zp = detail["quantization"]
    if np.dtype(detail["dtype"]).kind not in "iu" or scale == 0.0:
        return None
    return {"scale": float(scale), "zero_point": int(zp)}


def io_specs(path: Path, nhwc: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input/output spec keys this target owns, read from the file (so they cannot disagree with it)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    input_spec = {"name": inp["name"], "shape": [int(d) for d in inp["shape"]], "layout": "NHWC" if nhwc else "NCHW",
                  "dtype": np.dtype(inp["dtype"]).name, "normalization_in_model": False, "quantization": _quant(inp)}
    output_spec = {"name": out["name"], "shape": [int(d) for d in out["shape"]], "dtype": np.dtype(out["dtype"]).name,
                   "kind": "logits", "quantization": _quant(out)}
    return input_spec, output_spec


RECIPES = {"fp32": None, "fp16": "weight_only fp16 (FLOAT_CASTING)", "dynamic_int8": "dynamic_wi8_afp32",
           "int8": "static_wi8_ai8"}


class TFLiteTarget(Target):
    name = "tflite"
    suffix = ".tflite"
    description = "TFLite / LiteRT flatbuffer for Android and the web (XNNPACK CPU; GPU/NNAPI report)"
    backends = ("litert",)
    precisions = ("fp32", "fp16", "dynamic_int8", "int8")
    supports_nhwc = True
    supports_calib = ("int8",)

    def available(self) -> tuple[bool, str]:
        """find_spec, not import: importing litert-torch takes seconds and `edge-sdk doctor` asks every target."""
        missing = [m for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer") if find_spec(m) is None]
        if missing:
            return False, f"needs litert-torch, ai-edge-litert and ai-edge-quantizer ({', '.join(missing)} missing)"
        return True, ""

    def can_run(self) -> tuple[bool, str]:
        if find_spec("ai_edge_litert") is None:
            return False, "ai-edge-litert is not installed"
        return True, ""

    def export(self, model: torch.nn.Module, example: torch.Tensor, opts: ConvertOptions, out_dir: Path,
               calib: Callable[[], list[torch.Tensor]]) -> Artifact:
        from .tflite_report import build_report
        self.check_options(opts)
        path = Path(out_dir) / FILE_NAME
        atomic_write(path, build(model, example, opts.precision, opts.nhwc, calib))
        input_spec, output_spec = io_specs(path, opts.nhwc)
        report = {"quantization": {"recipe": RECIPES[opts.precision], "input_dtype": input_spec["dtype"],
                                   "output_dtype": output_spec["dtype"]}, **build_report(path)}
        return Artifact(file=FILE_NAME, backend=opts.backend or self.backends[0], input_spec=input_spec,
                        output_spec=output_spec, report=report)


register_target(TFLiteTarget())
