"""Core ML `.mlpackage` (ML Program) target: camera pixels in, labels and logits out, Neural Engine first.

Steps (each a short function): wrap the model so it takes 0-255 RGB pixels -> torch.export -> MIL program
(coremltools) -> ML Program with an image input and a classifier head -> optional weight compression
(coremltools.optimize.coreml) -> save -> Neural Engine readiness report read back from the saved program.

Why the wrapper: Core ML image inputs apply one scalar `scale` and a per-channel `bias`, which cannot express
ImageNet's per-channel std. Folding `(x / 255 - mean) / std` into the graph (one mul + one add on (1, 3, 1, 1)
constants) lets an app hand camera frames (CVPixelBuffer) to the model directly; the manifest says so with
`normalization_in_model: true`.

Why the MIL detour (torch.export -> "milinternal" -> ML Program): coremltools 9 fails ("list index out of range")
when a torch program with two outputs is converted with a ClassifierConfig in one call; converting the MIL
program in a second call keeps both the classifier outputs and the raw `logits` output that parity compares.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from edge_sdk.errors import EdgeError, UsageError, toolchain_errors
from edge_sdk.manifest import InputSpec, OutputSpec

from .base import Artifact, ConvertOptions, Target, deploy_of, step

INPUT_NAME = "image"
LOGITS_NAME = "logits"
PROBS_NAME = "probs"  # internal: consumed by the classify op
CLASS_LABEL_NAME = "classLabel"
FILE_NAME = "model.mlpackage"
COMPUTE_UNITS = "ALL"  # Neural Engine first, then GPU, then CPU (Core ML picks per op)

# Minimum deployment target -> what it brings for this target (coremltools docs: "Model compression" / opsets).
DEPLOYMENT_TARGETS: dict[str, str] = {
    "iOS16": "ML Program opset iOS16 (macOS13): fp16 I/O, int8 weights (constexpr_affine_dequantize), "
             "per-tensor palettization (constexpr_lut_to_dense)",
    "iOS17": "opset iOS17 (macOS14): as iOS16; the default",
    "iOS18": "opset iOS18 (macOS15): blockwise weight ops (constexpr_blockwise_shift_scale, iOS18 "
             "constexpr_lut_to_dense); paletteN uses per-grouped-channel lookup tables (group 16)",
}
DEFAULT_DEPLOYMENT_TARGET = "iOS17"
PALETTE_GROUP_SIZE = 16  # iOS18 per_grouped_channel palettization: one LUT per 16 output channels
# Compress weights with at least this many elements. coremltools' default (2048) leaves most 1x1 convs of small
# mobile models uncompressed; below ~512 elements a 6-bit LUT (64 fp16 entries) or per-channel scales eat the gain.
WEIGHT_THRESHOLD = 512


def _palette_bits(precision: str) -> int | None:
    return int(precision[len("palette"):]) if precision.startswith("palette") else None


class PixelInput(nn.Module):
    """`model((pixels / 255 - mean) / std)` for (B, 3, H, W) RGB pixels in 0..255.

    With `with_probs`, also returns softmax(logits): the classifier head of the ML Program reads probabilities
    from it while `logits` stays a separate output for parity.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], with_probs: bool) -> None:
        super().__init__()
        self.model = model
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))  # (1, 3, 1, 1)
        self.register_buffer("shift", mean_t / std_t)  # (1, 3, 1, 1)
        self.with_probs = with_probs

    def forward(self, pixels: torch.Tensor):  # (B, 3, H, W) 0..255 -> (B, K) [, (B, K)]
        logits = self.model(pixels * self.scale - self.shift)
        if self.with_probs:
            return logits, torch.softmax(logits, dim=-1)
        return logits


class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    description = ("Core ML ML Program for iOS/macOS: image input (RGB 0-255), fp16, compute units ALL "
                   "(Neural Engine first); int8 / 6-bit / 4-bit weight compression; runs only on Apple OSes")
    backends = ("coreml",)
    precisions = ("fp16", "fp32", "int8", "palette6", "palette4")
    deployment_targets = tuple(DEPLOYMENT_TARGETS)
    default_deployment_target = DEFAULT_DEPLOYMENT_TARGET

    def available(self) -> tuple[bool, str]:
        try:
            import coremltools  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any import failure means the same thing here
            return False, f"coremltools is not importable: {exc}"
        return True, ""

    def can_run(self) -> tuple[bool, str]:
        from edge_sdk.runtime.engines import coreml_can_run
        return coreml_can_run()

    def summary(self, report: dict[str, Any]) -> str:
        """Neural Engine readiness read back from the saved ML Program."""
        s = report.get("summary") or {}
        return f"ANE ready: {report.get('ane_ready')}, {s.get('ops', '?')} ops, {s.get('issues', '?')} issue(s)"

    def export(self, model: nn.Module, example: torch.Tensor, opts: ConvertOptions, out_dir: Path,
               calib: Callable[[], list[torch.Tensor]]) -> Artifact:
        """Convert, compress, save `out_dir/model.mlpackage` and read back its ANE readiness report."""
        opts = self.resolve(opts)
        from .coreml_report import ane_report
        labels = model_labels(model, opts)
        package = build_package(model, example, opts, Path(out_dir), labels)
        with step("report", "Neural Engine readiness"):
            report = ane_report(package, opts.precision)
        report.update(compute_units=COMPUTE_UNITS, deployment_target=deployment_target(opts),
                      compression=compression_config(opts))
        num_classes = _num_classes(model, example)
        return Artifact(file=package.name, backend="coreml", input=input_spec(model, example),
                        output=output_spec(num_classes, labels), report=report,
                        extra={"compute_units": COMPUTE_UNITS, "deployment_target": deployment_target(opts)})


def deployment_target(opts: ConvertOptions) -> str:
    """The requested minimum deployment target, or a UsageError saying which are supported."""
    name = opts.deployment_target or DEFAULT_DEPLOYMENT_TARGET
    if name not in DEPLOYMENT_TARGETS:
        raise UsageError(f"--deployment-target {name} is not supported by target coreml; supported: "
                         f"{', '.join(DEPLOYMENT_TARGETS)} (default {DEFAULT_DEPLOYMENT_TARGET})")
    return name


def model_labels(model: nn.Module, opts: ConvertOptions) -> list[str] | None:
    """Labels from the options (pipeline --labels) or the model's deploy config; None when unknown."""
    labels = getattr(opts, "labels", None)
    if not labels:
        deploy = getattr(model, "deploy", None)
        labels = getattr(deploy, "labels", None)
    if not labels:
        return None
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and len(labels) != num_classes:
        raise UsageError(f"{len(labels)} labels given but the model has {num_classes} classes")
    return [str(x) for x in labels]


def _normalization(model: nn.Module) -> tuple[Sequence[float], Sequence[float]]:
    deploy = getattr(model, "deploy", None)
    if deploy is None:  # a plain nn.Module: assume it takes [0, 1] pixels
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return deploy.mean, deploy.std


def wrap_model(model: nn.Module, with_probs: bool) -> PixelInput:
    """The eval-mode pixel-input module that is exported (normalization folded in)."""
    mean, std = _normalization(model)
    return PixelInput(model, mean, std, with_probs).eval()


def example_pixels(example: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Un-normalize the pipeline's normalized example back to 0..255 pixels (export only needs the shape, but
    realistic values keep any value-dependent tracing honest)."""
    mean, std = _normalization(model)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((example * s + m) * 255.0).clamp(0, 255)[:1]


@contextlib.contextmanager
def quiet_coremltools() -> Iterator[None]:
    """Silence the tqdm bars coremltools draws for every frontend, pass pipeline and compression pass.

    The pipeline draws its own per-step progress; coremltools' bars (a dozen per conversion, on stderr) would
    interleave with it. coremltools modules import `tqdm` by name at import time, so each such module-level name
    is swapped for a disabled tqdm for the duration of the conversion and restored afterwards. Redirecting stderr
    instead would also swallow our own progress and any real error text.
    """
    import tqdm as tqdm_module
    quiet = functools.partial(tqdm_module.tqdm, disable=True)
    swapped = []
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("coremltools") or mod is None:
            continue
        for attr in ("tqdm", "_tqdm"):
            value = getattr(mod, attr, None)
            if value is tqdm_module.tqdm:
                swapped.append((mod, attr, value))
                setattr(mod, attr, quiet)
    try:
        yield
    finally:
        for mod, attr, value in swapped:
            setattr(mod, attr, value)


def build_package(model: nn.Module, example: torch.Tensor, opts: ConvertOptions, out_dir: Path,
                  labels: list[str] | None) -> Path:
    """Steps export -> convert -> compress -> save; toolchain failures become one EdgeError line."""
    wrapped = wrap_model(model, with_probs=labels is not None)
    pixels = example_pixels(example, model)
    import coremltools  # noqa: F401  (imported before quiet_coremltools() looks for its tqdm names)
    import coremltools.optimize.coreml  # noqa: F401
    with toolchain_errors("Core ML conversion"), quiet_coremltools():
        mlmodel = _convert_steps(wrapped, pixels, opts, labels)
    with step("serialize", FILE_NAME):
        return save_package(mlmodel, out_dir)


def _convert_steps(wrapped: nn.Module, pixels: torch.Tensor, opts: ConvertOptions, labels: list[str] | None) -> Any:
    with step("export", "torch.export"):
        ep = torch.export.export(wrapped, (pixels,)).run_decompositions({})
    with step("lower", f"Core ML MIL ({opts.precision}, {deployment_target(opts)})"):
        prog = to_mil(ep, tuple(pixels.shape), opts, labels is not None)
    if compression_config(opts) is not None:
        with step("quantize", f"compress weights ({opts.precision})"):
            image_input = prog.functions["main"].input_types
            prog = compress(to_mlprogram(prog, opts, None), opts)._mil_program
            prog.functions["main"].input_types = image_input  # lost in coremltools' proto round trip
    with step("lower", "ML Program"):
        return to_mlprogram(prog, opts, labels)


def _ct_target(name: str) -> Any:
    import coremltools as ct
    return getattr(ct.target, name)


def _ct_precision(opts: ConvertOptions) -> Any:
    import coremltools as ct
    return ct.precision.FLOAT32 if opts.precision == "fp32" else ct.precision.FLOAT16


def to_mil(ep: Any, shape: tuple[int, ...], opts: ConvertOptions, with_probs: bool) -> Any:
    """ExportedProgram -> optimized MIL program (fp16/fp32) with an RGB image input and fp32 outputs."""
    import numpy as np
    import coremltools as ct
    outputs = [ct.TensorType(name=LOGITS_NAME, dtype=np.float32)]
    if with_probs:
        outputs.append(ct.TensorType(name=PROBS_NAME, dtype=np.float32))
    image = ct.ImageType(name=INPUT_NAME, shape=shape, color_layout=ct.colorlayout.RGB, scale=1.0,
                         bias=[0.0, 0.0, 0.0])
    return ct.convert(ep, convert_to="milinternal", compute_precision=_ct_precision(opts),
                      minimum_deployment_target=_ct_target(deployment_target(opts)), inputs=[image],
                      outputs=outputs)


def to_mlprogram(prog: Any, opts: ConvertOptions, labels: list[str] | None) -> Any:
    """MIL program -> MLModel; with labels, a classify op turns `probs` into classLabel / classLabel_probs.

    The program is already optimized (and compressed), so no pass runs again (PassPipeline.EMPTY). Compression
    runs before the classifier is added: coremltools 9 cannot compress a classifier model (its list-typed class
    constant fails to re-serialize).
    """
    import coremltools as ct
    prog.functions["main"].output_types = None  # let the classifier add its outputs (see module docstring)
    classifier = None
    if labels is not None:
        classifier = ct.ClassifierConfig(labels, predicted_feature_name=CLASS_LABEL_NAME,
                                         predicted_probabilities_output=PROBS_NAME)
    mlmodel = ct.convert(prog, convert_to="mlprogram", compute_precision=_ct_precision(opts),
                         minimum_deployment_target=_ct_target(deployment_target(opts)),
                         classifier_config=classifier, compute_units=ct.ComputeUnit.ALL,
                         pass_pipeline=ct.PassPipeline.EMPTY)
    mlmodel.short_description = "edge-sdk image classifier: RGB 0-255 pixels in, normalization inside the model"
    return mlmodel


def compression_config(opts: ConvertOptions) -> dict[str, Any] | None:
    """The coremltools.optimize.coreml settings used for this precision (recorded in the report)."""
    bits = _palette_bits(opts.precision)
    if opts.precision == "int8":
        return {"method": "linear_quantize_weights", "mode": "linear_symmetric", "dtype": "int8",
                "granularity": "per_channel", "weight_threshold": WEIGHT_THRESHOLD}
    if bits is not None:
        grouped = deployment_target(opts) == "iOS18"
        cfg: dict[str, Any] = {"method": "palettize_weights", "mode": "kmeans", "nbits": bits,
                               "granularity": "per_grouped_channel" if grouped else "per_tensor",
                               "weight_threshold": WEIGHT_THRESHOLD}
        if grouped:
            cfg["group_size"] = PALETTE_GROUP_SIZE
        return cfg
    return None


def compress(mlmodel: Any, opts: ConvertOptions) -> Any:
    """int8 linear (per-channel, symmetric) or N-bit k-means palettization of the weights (coremltools.optimize).

    Compute stays fp16; only stored weights shrink (decompressed at load time, or on the fly on newer devices).
    Weights under WEIGHT_THRESHOLD elements stay fp16: too small to matter.
    """
    import coremltools.optimize.coreml as cto
    cfg = compression_config(opts)
    assert cfg is not None
    if cfg["method"] == "linear_quantize_weights":
        op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                             weight_threshold=WEIGHT_THRESHOLD)
        return cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=op_cfg))
    per_tensor = cto.OpPalettizerConfig(mode="kmeans", nbits=cfg["nbits"], granularity="per_tensor",
                                        weight_threshold=WEIGHT_THRESHOLD)
    if cfg["granularity"] == "per_tensor":
        return cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=per_tensor))
    grouped = cto.OpPalettizerConfig(mode="kmeans", nbits=cfg["nbits"], granularity="per_grouped_channel",
                                     group_size=cfg["group_size"], weight_threshold=WEIGHT_THRESHOLD)
    # Weights whose output channels do not split into groups would be skipped: give them one LUT per tensor.
    fallback = {name: per_tensor for name in _ungroupable_weights(mlmodel._mil_program, cfg["group_size"])}
    config = cto.OptimizationConfig(global_config=grouped, op_name_configs=fallback)
    return cto.palettize_weights(mlmodel, config)


def _ungroupable_weights(prog: Any, group_size: int) -> list[str]:
    """Names of weight consts (>= WEIGHT_THRESHOLD elements) whose axis 0 is not a multiple of `group_size`."""
    names = []
    for op in prog.functions["main"].operations:
        val = op.outputs[0].val if op.op_type == "const" else None
        shape = getattr(val, "shape", ())
        if len(shape) >= 2 and val.size >= WEIGHT_THRESHOLD and shape[0] % group_size:
            names.append(op.name)
    return names


def save_package(mlmodel: Any, out_dir: Path) -> Path:
    """Write `out_dir/model.mlpackage` (a directory) via a temp name + rename, so no half-written package."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / FILE_NAME
    tmp = out_dir / f".{FILE_NAME}.partial-{os.getpid()}.mlpackage"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        mlmodel.save(str(tmp))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except OSError as exc:
        raise EdgeError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _num_classes(model: nn.Module, example: torch.Tensor) -> int:
    n = getattr(model, "num_classes", None)
    if n is not None:
        return int(n)
    with torch.no_grad():
        return int(model(example[:1]).shape[-1])


def input_spec(model: nn.Module, example: torch.Tensor) -> InputSpec:
    """An image input: 0-255 RGB pixels, normalization inside the model (a CVPixelBuffer goes straight in)."""
    _, c, h, w = example.shape
    return InputSpec.from_deploy(deploy_of(model, example), name=INPUT_NAME, shape=(1, int(c), int(h), int(w)),
                                 layout="NCHW",
                                 dtype="float32", normalization_in_model=True,
                                 extras={"coreml_type": "image", "pixel_range": [0, 255]})


def output_spec(num_classes: int, labels: list[str] | None) -> OutputSpec:
    extras = {"class_label": CLASS_LABEL_NAME, "class_probabilities": f"{CLASS_LABEL_NAME}_probs"} \
        if labels is not None else {}
    return OutputSpec(shape=(1, num_classes), name=LOGITS_NAME, extras=extras)


TARGET = CoreMLTarget()
