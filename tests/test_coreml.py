"""Core ML target: packages are checked by reading their spec and MIL program (Core ML cannot execute on Linux).

Each family test converts one trained tiny model (tests/trained.py) to every precision, spread over the three
deployment targets: every family x every precision x (each deployment target at least once per precision) in 25
conversions, with the Neural Engine readiness report asserted for each.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edge_sdk.converters.base import ConvertOptions
from edge_sdk.converters.targets import get_target
from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.models.registry import create_model
from trained import CLASSES, trained_tiny

pytestmark = pytest.mark.slow

ct = pytest.importorskip("coremltools")

from edge_sdk.converters import coreml as C  # noqa: E402
from edge_sdk.converters.coreml_report import ane_report, load_program  # noqa: E402

NUM_CLASSES = 7
COMPRESSION_OP = {  # (precision, deployment target) -> the constexpr op that stores the compressed weights
    ("int8", "iOS16"): "constexpr_affine_dequantize", ("int8", "iOS17"): "constexpr_affine_dequantize",
    ("int8", "iOS18"): "constexpr_blockwise_shift_scale",
    **{(palette, target): "constexpr_lut_to_dense" for palette in ("palette6", "palette4")
       for target in ("iOS16", "iOS17", "iOS18")},
}
TRAINED_LABELS = tuple(f"class_{i}" for i in range(CLASSES))


def _tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=NUM_CLASSES).reparameterize()


def _export(model: nn.Module, out: Path, precision: str, target: str | None, labels=None):
    example = model.example_inputs(1)[0] if hasattr(model, "example_inputs") else torch.randn(1, 3, 32, 32)
    opts = ConvertOptions(precision=precision, deployment_target=target, labels=labels)
    return C.CoreMLTarget().export(model, example, opts, out, lambda: [])


def _size(package: Path) -> int:
    """Bytes of the weight file: the part compression shrinks (the program text is similar in every mode)."""
    return (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").stat().st_size


def _weight_dtypes(package: Path) -> set[str]:
    """dtypes of the float weight constants (>= 64 elements) in the program."""
    from coremltools.converters.mil.mil import types
    prog = load_program(package)
    out = set()
    for op in prog.functions["main"].operations:
        if op.op_type == "const" and op.outputs[0].val is not None and np.size(op.outputs[0].val) >= 64:
            dt = types.builtin_to_string(op.outputs[0].dtype)
            if dt.startswith("fp"):
                out.add(dt)
    return out


def _check_spec(package: Path, size: int, labels: tuple[str, ...] | None, classes: int = NUM_CLASSES) -> None:
    spec = ct.utils.load_spec(str(package))
    assert spec.WhichOneof("Type") == "mlProgram"
    (inp,) = spec.description.input
    assert inp.name == "image" and inp.type.WhichOneof("Type") == "imageType"
    img = inp.type.imageType
    assert (img.width, img.height) == (size, size)
    assert img.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    outs = {o.name: o.type.WhichOneof("Type") for o in spec.description.output}
    assert outs["logits"] == "multiArrayType"
    logits = next(o for o in spec.description.output if o.name == "logits").type.multiArrayType
    assert list(logits.shape) == [1, classes]
    assert logits.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    if labels:
        assert outs["classLabel"] == "stringType" and outs["classLabel_probs"] == "dictionaryType"
        assert spec.description.predictedFeatureName == "classLabel"
        assert spec.description.predictedProbabilitiesName == "classLabel_probs"
        classify = [op for op in load_program(package).functions["main"].operations if op.op_type == "classify"]
        assert len(classify) == 1 and list(classify[0].inputs["classes"].val) == list(labels)
    else:
        assert set(outs) == {"logits"}


FAMILY_PLANS = {
    # family model: [(precision, deployment target, labels?)] — every precision, every deployment target
    "levit_tiny": [("fp16", "iOS17", True), ("fp32", "iOS18", False), ("int8", "iOS16", False),
                   ("palette6", "iOS17", False), ("palette4", "iOS18", True)],
    "mobilevitv2_tiny": [("fp16", "iOS16", False), ("fp32", "iOS17", True), ("int8", "iOS18", False),
                         ("palette6", "iOS16", False), ("palette4", "iOS17", False)],
    "mobilevit_tiny": [("fp16", "iOS18", True), ("fp32", "iOS16", False), ("int8", "iOS17", False),
                       ("palette6", "iOS18", False), ("palette4", "iOS16", False)],
    "pbhybrid_micro": [("fp16", "iOS17", False), ("fp32", "iOS16", False), ("int8", "iOS17", True),
                       ("palette6", "iOS18", False), ("palette4", "iOS17", False)],
    "cctt_micro": [("fp16", "iOS16", True), ("fp32", "iOS18", False), ("int8", "iOS18", False),
                   ("palette6", "iOS17", False), ("palette4", "iOS16", False)],
}


@pytest.mark.parametrize("name", sorted(FAMILY_PLANS))
def test_every_precision_and_target(name: str, tmp_path: Path) -> None:
    model = trained_tiny(name).reparameterize()
    size = model.deploy.input_size
    sizes, reports = {}, {}
    for precision, target, with_labels in FAMILY_PLANS[name]:
        out = tmp_path / precision
        labels = TRAINED_LABELS if with_labels else None
        art = _export(model, out, precision, target, labels)
        package = out / art.file
        assert art.file == "model.mlpackage" and package.is_dir()
        assert not [p for p in out.iterdir() if p.name != art.file], "temp files left behind"
        _check_spec(package, size, labels, CLASSES)
        sizes[precision], reports[precision] = _size(package), art.report
        rep = art.report
        assert rep["deployment_target"] == target and rep["compute_units"] == "ALL"
        assert rep["op_histogram"].get("conv", 0) >= 3
        if precision in ("fp16", "fp32"):
            assert _weight_dtypes(package) == {precision}
            assert rep["compression_ops"] == {} and rep["compression"] is None
        else:
            op = COMPRESSION_OP[(precision, target)]
            assert rep["compression_ops"].get(op, 0) >= 3, rep["compression_ops"]
            assert rep["compression"]["method"] in ("linear_quantize_weights", "palettize_weights")
        assert art.output.name == "logits" and art.output.kind == "logits"
        assert art.output.shape == (1, CLASSES)
        assert ("class_label" in art.output.extras) == with_labels
        assert art.input.normalization_in_model is True and art.input.extras["coreml_type"] == "image"
        assert rep["summary"]["ops"] == sum(rep["op_histogram"].values()) > 20
    assert sizes["fp32"] > 1.6 * sizes["fp16"]
    for compressed in ("int8", "palette6", "palette4"):
        # tiny models keep many weights under WEIGHT_THRESHOLD in fp16, so the gain is smaller than on zoo sizes
        assert sizes[compressed] < 0.9 * sizes["fp16"], (compressed, sizes)
    if name == "mobilevitv2_tiny":  # both palettes per-tensor (iOS16 / iOS17): fewer bits, smaller file
        assert sizes["palette4"] < sizes["palette6"] < sizes["int8"], sizes
    # The zoo follows the edge op rules (4-D tensors, no gather, fp16 throughout): nothing should block the ANE.
    assert reports["fp16"]["issues"] == [] and reports["fp16"]["ane_ready"] is True, reports["fp16"]["issues"][:5]
    assert reports["fp32"]["ane_ready"] is False
    assert reports["fp32"]["summary"]["issues_by_rule"] == {"fp32_program": 1}


class _AneHostile(nn.Module):
    """Every rule in coreml_report once: dilated conv, a rank-5 tensor, int argmax, a dynamic-index gather."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=2, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, 3, 32, 32)
        y = self.conv(x)  # (1, 8, 32, 32)
        y = (y.reshape(1, 2, 4, 32, 32) * 2.0).sum(1)  # rank 5 inside
        v = y.mean((2, 3))  # (1, 4)
        idx = torch.argmax(v, dim=1, keepdim=True)  # int, data-dependent
        return v + torch.gather(v, 1, idx)  # (1, 4)


def test_report_flags_ane_hostile_ops(tmp_path: Path) -> None:
    art = _export(_AneHostile().eval(), tmp_path, "fp16", None)
    rep = art.report
    rules = set(rep["summary"]["issues_by_rule"])
    assert {"dilated_conv", "rank_gt_4", "int_op", "unsupported_op"} <= rules, rep["issues"]
    assert rep["ane_ready"] is False
    gather = [i for i in rep["issues"] if i["rule"] == "unsupported_op"]
    assert gather and gather[0]["op_type"].startswith("gather") and "hollance" in gather[0]["source"]
    assert all(i["source"] and i["detail"] for i in rep["issues"])
    assert rep["summary"]["ops_flagged"] <= rep["summary"]["ops"]


def test_report_reads_a_saved_package_again(tmp_path: Path) -> None:
    art = _export(_AneHostile().eval(), tmp_path, "fp32", "iOS16")
    again = ane_report(tmp_path / art.file, "fp32")
    assert again["issues"] == art.report["issues"]
    assert "fp32_program" in again["summary"]["issues_by_rule"]
    assert "fp32_op" not in again["summary"]["issues_by_rule"]  # fp32 ops are one program-level issue


def test_normalization_is_folded_into_the_model() -> None:
    """The exported module (pixels in) equals the zoo model on normalized input — checked without Core ML."""
    model = _tiny("levit_tiny")
    pixels = torch.randint(0, 256, (2, 3, 64, 64)).float()
    mean = torch.tensor(model.deploy.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.deploy.std).view(1, 3, 1, 1)
    with torch.no_grad():
        want = model((pixels / 255.0 - mean) / std)
        got = C.wrap_model(model, with_probs=False)(pixels)
        logits, probs = C.wrap_model(model, with_probs=True)(pixels)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert torch.allclose(logits, want, atol=1e-5) and torch.allclose(probs, torch.softmax(want, -1), atol=1e-6)
    normalized = model.example_inputs(1)[0]
    assert torch.allclose((C.example_pixels(normalized, model) / 255.0 - mean) / std,
                          normalized.clamp((0 - mean) / std, (1 - mean) / std), atol=1e-5)


def test_folding_survives_torch_export() -> None:
    """The graph handed to coremltools (after run_decompositions) still computes the same logits."""
    model = _tiny("mobilevitv2_tiny")
    wrapped = C.wrap_model(model, with_probs=False)
    pixels = torch.randint(0, 256, (1, 3, 64, 64)).float()
    ep = torch.export.export(wrapped, (pixels,)).run_decompositions({})
    with torch.no_grad():
        assert torch.allclose(ep.module()(pixels), wrapped(pixels), atol=1e-5)


def test_target_is_registered() -> None:
    t = get_target("coreml")
    assert isinstance(t, C.CoreMLTarget)
    assert (t.suffix, t.backends, t.default_precision()) == (".mlpackage", ("coreml",), "fp16")
    assert t.precisions == ("fp16", "fp32", "int8", "palette6", "palette4")
    assert t.available() == (True, "")


@pytest.mark.parametrize("bad", ["iOS15", "ios17", "macOS14"])
def test_unsupported_deployment_target_is_a_usage_error(bad: str, tmp_path: Path) -> None:
    t = get_target("coreml")
    with pytest.raises(UsageError, match=r"--deployment-target .* supported: iOS16, iOS17, iOS18"):
        t.check_options(ConvertOptions(precision="fp16", deployment_target=bad))
    with pytest.raises(UsageError):
        _export(nn.Conv2d(3, 4, 1), tmp_path, "fp16", bad)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("opts, match", [
    (ConvertOptions(precision="int4"), "supported: fp16, fp32, int8, palette6, palette4"),
    (ConvertOptions(precision="fp16", backend="xnnpack"), "supported: coreml"),
    (ConvertOptions(precision="fp16", nhwc=True), "--nhwc"),
])
def test_other_bad_options(opts: ConvertOptions, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        get_target("coreml").check_options(opts)


def test_labels_must_match_classes(tmp_path: Path) -> None:
    model = _tiny("levit_tiny")
    with pytest.raises(UsageError, match="3 labels given but the model has 7 classes"):
        _export(model, tmp_path, "fp16", None, labels=("a", "b", "c"))


@pytest.mark.skipif(platform.system() == "Darwin", reason="Linux behaviour")
def test_cannot_run_on_linux(tmp_path: Path) -> None:
    ok, why = get_target("coreml").can_run()
    assert ok is False and why.startswith("Core ML packages execute only on macOS")
    from edge_sdk.runtime.engines import open_coreml
    with pytest.raises(EdgeError, match="needs macOS"):
        open_coreml(tmp_path / "model.mlpackage")


def test_no_pure_python_core_ml_runtime_here() -> None:
    """coremltools has no MIL interpreter: predict needs the macOS framework (documented in docs/coreml.md)."""
    import coremltools.models.model as mm
    assert platform.system() == "Darwin" or mm._MLModelProxy is None
