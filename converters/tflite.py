"""TFLite / LiteRT `.tflite` target: fp32, fp16 weights, dynamic-range int8 and full-integer int8, NCHW or NHWC.

Steps (each a short function): convert the eval model with litert-torch to an fp32 flatbuffer -> for the reduced
precisions, rewrite that flatbuffer with ai-edge-quantizer recipes -> write the file -> read back its I/O spec and
the delegate-compatibility report (converters/tflite_report.py).

Why the quantizer works on the fp32 .tflite instead of litert-torch's own PT2E quantization: litert-torch's static
int8 produced files that fail `allocate_tensors` at SOFTMAX (output scale not 1/256, TOOLCHAIN.md), while
ai-edge-quantizer recipes on the fp32 file load and run in ai-edge-litert for every precision here.

int8 has int8 input and output tensors (no QUANTIZE / DEQUANTIZE at the boundary), so a camera pipeline feeds int8
directly. The manifest records the input quantization {scale, zero_point} applied to the NORMALIZED value
(q = round(x / scale) + zero_point) and the output quantization used to recover logits. Inside, two kinds of op
stay float32 and the report lists each one (`report.float_ops`, `report.quantization.kept_float`):
- ops the quantizer has no int8 kernel for (EXP, REDUCE_MAX of the MobileViT softmax): it brackets them with
  DEQUANTIZE / QUANTIZE by itself;
- DIVs by a computed denominator (see `zero_risk_divisions`), with the `x + eps` ADD that computes that
  denominator: TFLite's int8 DIV kernel aborts on a denominator equal to the zero point
  (`div.cc: data[i] != zero_point`), which is what the ReLU linear attention's normalizer (pbhybrid, cctt)
  quantizes to for tokens whose q is all zero, and what any small denominator can become on some input.

Calibration takes the global min/max over the calibration set (`qsv_utils.min_max_update`), not the quantizer's
default moving average (smoothing 0.95, i.e. mostly the first images' ranges): with the moving average, activations
of later images clip, and trained levit_tiny int8 fell to mean cosine 0.974 / decisive top-1 71% (min/max: 0.999 /
100%).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from edge_sdk.bundle import atomic_write
from edge_sdk.errors import EdgeError, toolchain_errors
from edge_sdk.manifest import InputSpec, OutputSpec, Quantization

from .base import Artifact, ConvertOptions, Target, deploy_of, step
from .weight_rounding import fit_depthwise_rounding

FILE_NAME = "model.tflite"
INT8_WEIGHTS = ("int8", "dynamic_int8")  # precisions whose weights are per-channel int8
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
    not a TRANSPOSE (Android camera frames are HWC). Then the ops XNNPACK would leave outside are rewritten."""
    import litert_torch
    model = model.eval()
    if nhwc:
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        example = to_nhwc(example)
    from .tflite_xnnpack import one_xnnpack_partition
    with toolchain_errors("litert-torch conversion"), _quiet_litert(), torch.no_grad():
        data = bytes(litert_torch.convert(model, (example,)).model_content())
    return one_xnnpack_partition(data)[0]  # one XNNPACK partition (exact rewrites, converters/tflite_xnnpack.py)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _recipe(precision: str, kept_float: list[dict[str, Any]] | None = None) -> Any:
    """ai-edge-quantizer recipe per precision (see ai_edge_quantizer/recipe.py).

    `kept_float` (int8 only): ops that stay float32, each matched by op type and its exact output tensor name (the
    quantizer's op scope is the output names joined with ';'); later configs override earlier ones.
    """
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
        rm = recipe_manager.RecipeManager()
        rm.load_quantization_recipe(recipe.static_wi8_ai8())
        for op in kept_float or []:
            rm.add_quantization_config(regex=f"^{re.escape(op['tensor'])};$",
                                       operation_name=qtyping.TFLOperationName(op["op"]),
                                       algorithm_key=AlgorithmName.NO_QUANTIZE)
        return rm.get_quantization_recipe()
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


@dataclass
class Quantized:
    """A reduced-precision flatbuffer and what it keeps in float on purpose (for the manifest report)."""

    data: bytes
    recipe: str | None
    calibration: str | None = None
    kept_float: list[dict[str, Any]] = field(default_factory=list)
    depthwise_rounding_fitted: int = 0  # depthwise convs rounded by converters/weight_rounding.py


def calibrate_min_max(fp32: bytes, recipe: Any, data: dict[str, list[dict]]) -> dict[str, Any]:
    """Per-tensor {min, max} over ALL calibration samples.

    `Quantizer.calibrate` merges samples with a moving average (factor 0.95), so the ranges follow the first few
    images and later activations clip; the Calibrator accepts the plain min/max merge instead.
    """
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils
    rm = recipe_manager.RecipeManager()
    rm.load_quantization_recipe(recipe)
    cal = calibrator.Calibrator(bytearray(fp32), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    cal.calibrate(data, rm)
    return cal.get_model_qsvs()


NUMERATOR_OPS = frozenset({"BATCH_MATMUL", "FULLY_CONNECTED"})  # a float DIV's numerator producer kept float


def _graph(fp32: bytes) -> tuple[list[dict], dict[int, dict], set[int]]:
    """Ops, tensors and constant tensor indices of the fp32 file (builtin kernels: no XNNPACK rewrite)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=fp32,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    produced = {o for op in ops for o in op["outputs"]}
    inputs = {d["index"] for d in interp.get_input_details()}
    return ops, tensors, {i for i in tensors if i not in produced and i not in inputs}


def _range(qsv: dict[str, Any] | None) -> str:
    """The calibrated range and its int8 step, for the report."""
    if qsv is None:
        return "not calibrated"
    lo, hi = float(np.min(qsv["min"])), float(np.max(qsv["max"]))
    return f"calibrated range [{lo:.3g}, {hi:.3g}], int8 step {(max(hi, 0.0) - min(lo, 0.0)) / 255.0:.3g}"


def zero_risk_divisions(fp32: bytes, qsvs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every DIV by a computed (non-constant) denominator, with the ops around it that must stay float as well.

    TFLite's int8 DIV aborts when a denominator equals its zero point (`div.cc data[i] != zero_point`): any
    denominator value below half an int8 step does, and whether one occurs depends on the input, not on the
    calibration set. Measured: a rule that kept only DIVs whose calibrated denominator range came within 2 steps of
    zero passed parity on every tiny model, yet the standard pbhybrid_tiny aborted on a benchmark input. So every
    computed denominator stays float (a few elementwise ops per attention). For each such DIV:
    - the DIV itself;
    - the `den + const` ADD producing its denominator: with only the DIV float, the dequantized denominator is
      0.0 and the quotient inf/NaN; with the ADD float, the epsilon survives;
    - the BATCH_MATMUL / FULLY_CONNECTED producing its numerator: the DIV multiplies the numerator's int8 rounding
      error by 1/denominator, large exactly where the denominator is small (trained pbhybrid_micro: top-1 6/7 on
      decisive images with an int8 numerator, 7/7 without).
    Returns [{op, tensor (exact output name), reason}] for the recipe and the manifest.
    """
    ops, tensors, constants = _graph(fp32)
    producer = {o: op for op in ops for o in op["outputs"]}
    kept: list[dict[str, Any]] = []
    for op in ops:
        num, den = op["inputs"][0], op["inputs"][1] if len(op["inputs"]) > 1 else -1
        if op["op_name"] != "DIV" or den in constants:
            continue
        kept.append({"op": "DIV", "tensor": tensors[op["outputs"][0]]["name"],
                     "reason": f"computed int8 DIV denominator ({_range(qsvs.get(tensors[den]['name']))}): a value "
                               "under half a step is the zero point, which TFLite's int8 DIV rejects"})
        src = producer.get(den)
        if src is not None and src["op_name"] == "ADD" and any(i in constants for i in src["inputs"]):
            kept.append({"op": "ADD", "tensor": tensors[den]["name"],
                         "reason": "adds the epsilon to that DIV's denominator: in int8 the epsilon rounds away"})
        src = producer.get(num)
        if src is not None and src["op_name"] in NUMERATOR_OPS:
            kept.append({"op": src["op_name"], "tensor": tensors[num]["name"],
                         "reason": "that DIV's numerator: its int8 rounding error is multiplied by 1/denominator, "
                                   "large exactly where the denominator is small"})
    return kept


def quantize(fp32: bytes, precision: str, calib: Callable[[], list[torch.Tensor]], nhwc: bool) -> Quantized:
    """Apply the precision's recipe to the fp32 flatbuffer (int8: min/max calibration, zero-risk DIVs float)."""
    from ai_edge_quantizer import quantizer
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the quantizer draws tqdm bars on stderr
            if precision != "int8":
                q = quantizer.Quantizer(bytearray(fp32))
                q.load_quantization_recipe(_recipe(precision))
                out = q.quantize(None, enable_progress_bar=False, enable_progress_report=False)
                return Quantized(bytes(out.quantized_model), RECIPES[precision])
            data = {SIGNATURE: calibration_set(calib, _input_name(fp32), nhwc)}
            qsvs = calibrate_min_max(fp32, _recipe("int8"), data)
            kept = zero_risk_divisions(fp32, qsvs)
            out = _quantize_one_partition(fp32, qsvs, kept)
    except EdgeError:
        raise
    except Exception as exc:
        raise EdgeError(f"ai-edge-quantizer failed for {precision}: {_first_line(exc)}") from exc
    recipe = RECIPES["int8"] + (f" + {len(kept)} ops kept float" if kept else "")
    return Quantized(bytes(out.quantized_model), recipe, "min_max", kept)


def _QUANTIZER_OPS() -> set[str]:  # noqa: N802 (a constant computed lazily: the quantizer imports slowly)
    """Op types the quantizer's recipe can address (QUANTIZE / DEQUANTIZE themselves are not among them)."""
    from ai_edge_quantizer import qtyping
    return {o.value for o in qtyping.TFLOperationName} - {"QUANTIZE", "DEQUANTIZE", "*"}


XNNPACK_ROUNDS = 4  # each round keeps float what the previous one left outside XNNPACK; 1-2 rounds suffice


def _quantize_one_partition(fp32: bytes, qsvs: dict[str, Any], kept: list[dict[str, Any]]) -> Any:
    """Static int8, then keep float every int8 op XNNPACK left outside its delegate, until one partition remains.

    Why: LiteRT's XNNPACK has no int8 kernel here for some ops (measured with ai-edge-litert 2.3.0: BATCH_MATMUL of
    two activations, SOFTMAX, HARD_SWISH, AVERAGE_POOL_2D, broadcast ADDs of attention biases, FULLY_CONNECTED with
    computed weights). Each such int8 op runs on TFLite's reference kernel between two XNNPACK partitions:
    pbhybrid_tiny had 34 partitions and ran 3.2x slower than fp32. Kept float, the op runs inside XNNPACK between a
    DEQUANTIZE and a QUANTIZE (both delegated): one partition, int8 everywhere else (pbhybrid_tiny: 1.7x faster
    than fp32). `kept` is extended in place (the manifest lists every op and why).
    """
    from ai_edge_quantizer import quantizer

    from edge_sdk.profile import xnnpack_outside
    for _ in range(XNNPACK_ROUNDS):
        q = quantizer.Quantizer(bytearray(fp32))
        q.load_quantization_recipe(_recipe("int8", kept))
        out = q.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False)
        done = {(k["op"], k["tensor"]) for k in kept}
        new = [{"op": o["op"], "tensor": o["tensor"],
                "reason": "XNNPACK has no int8 kernel for this op here: in int8 it would run outside the delegate "
                          "and split the graph (float inside XNNPACK between DEQUANTIZE and QUANTIZE instead)"}
               for o in xnnpack_outside(bytes(out.quantized_model))[2]
               if o["dtype"] in ("int8", "int16", "uint8") and (o["op"], o["tensor"]) not in done
               and o["op"] in _QUANTIZER_OPS()]
        if not new:
            return out
        kept.extend(new)
    return out


def build(model: torch.nn.Module, example: torch.Tensor, precision: str, nhwc: bool,
          calib: Callable[[], list[torch.Tensor]]) -> Quantized:
    """The .tflite bytes for one precision (fp32 first, then a quantizer pass for the others). The int8-weight
    precisions convert a copy whose depthwise kernels are already on the int8 grid, rounded to fit the
    calibration inputs (converters/weight_rounding.py)."""
    snapped = 0
    if precision in INT8_WEIGHTS:
        with step("calibrate", "depthwise int8 rounding"):
            model, snapped = fit_depthwise_rounding(model, calib)
    with step("export", "litert-torch (fp32 .tflite)"):
        fp32 = convert_fp32(model, example, nhwc)
    if precision == "fp32":
        return Quantized(fp32, None)
    with step("quantize", f"ai-edge-quantizer ({precision})"):
        return replace(quantize(fp32, precision, calib, nhwc), depthwise_rounding_fitted=snapped)


def _quant(detail: dict) -> Quantization | None:
    scale, zp = detail["quantization"]
    if np.dtype(detail["dtype"]).kind not in "iu" or scale == 0.0:
        return None
    return Quantization(float(scale), int(zp))


def io_specs(path: Path, nhwc: bool, deploy: Any) -> tuple[InputSpec, OutputSpec]:
    """The I/O specs of a written file, read back from it (so they cannot disagree with it); `deploy` is the
    model's DeployConfig (resize, crop, mean, std)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    input_spec = InputSpec.from_deploy(deploy, name=inp["name"], shape=tuple(int(d) for d in inp["shape"]),
                                       layout="NHWC" if nhwc else "NCHW", dtype=np.dtype(inp["dtype"]).name,
                                       quantization=_quant(inp))
    output_spec = OutputSpec(shape=tuple(int(d) for d in out["shape"]), dtype=np.dtype(out["dtype"]).name,
                             name=out["name"], quantization=_quant(out))
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

    def summary(self, report: dict[str, Any]) -> str:
        """Ops, TRANSPOSE/RESHAPE counts, GPU/NNAPI delegate compatibility, float ops of int8 files."""
        from .tflite_report import summary
        return summary(report)

    def export(self, model: torch.nn.Module, example: torch.Tensor, opts: ConvertOptions, out_dir: Path,
               calib: Callable[[], list[torch.Tensor]]) -> Artifact:
        opts = self.resolve(opts)
        path = Path(out_dir) / FILE_NAME
        built = build(model, example, opts.precision, opts.nhwc, calib)
        with step("serialize", FILE_NAME):
            atomic_write(path, built.data)
        with step("report", "delegate compatibility"):
            return artifact(path, opts, built, deploy_of(model, example))


def artifact(path: Path, opts: ConvertOptions, built: Quantized, deploy: Any) -> Artifact:
    """The Artifact of a written file: I/O spec and report read back from the file, plus what stayed float."""
    from .tflite_report import build_report
    input_spec, output_spec = io_specs(path, opts.nhwc, deploy)
    report = build_report(path)
    quant = {"recipe": built.recipe, "input_dtype": input_spec.dtype, "output_dtype": output_spec.dtype}
    if opts.precision in INT8_WEIGHTS:
        quant["depthwise_rounding_fitted"] = built.depthwise_rounding_fitted
    if opts.precision == "int8":
        quant.update({"calibration": built.calibration, "kept_float": built.kept_float,
                      "full_integer": not report["float_ops"]})
    return Artifact(file=FILE_NAME, backend=opts.backend or TFLiteTarget.backends[0], input=input_spec,
                    output=output_spec, report={"quantization": quant, **report})


TARGET = TFLiteTarget()
