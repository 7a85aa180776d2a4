"""ExecuTorch target on the TRAINED tiny zoo: every family x {fp32, int8, mixed} lowers to ONE fully delegated
XNNPACK subgraph and meets the parity bar (docs/converters.md "Parity"); every family also yields a Core ML
delegate .pte (fp32, fp16) whose delegation report says everything went to Core ML (parity not_run on Linux).

Each (family, backend, precision) is converted once per module (module-scoped cache) and shared by its tests. The
25 conversions are the whole cost: 507 s measured for the file on 2 cores under load 2-3 (int8 31-59 s, mixed
12-32 s, fp32 9-17 s, Core ML 7-12 s each); see docs/converters.md for the table.
"""
from __future__ import annotations

import pytest
from edge_sdk.bundle import read_bundle
from edge_sdk.converters.base import ConvertOptions
from edge_sdk.converters.targets import get_target
from edge_sdk.converters.pipeline import ConvertResult, convert

from trained import TINY, trained_tiny

pytestmark = pytest.mark.slow

XNNPACK = ("fp32", "int8", "mixed")
COREML = ("fp32", "fp16")
# Calibration is cheap next to prepare/convert/lower (~0.2 s per image); 32 (the CLI default) keeps the
# histogram ranges stable. With 16 images mobilevit_tiny int8 flips its one near-tie decisive parity image.
CALIB = 32


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(family, backend, precision) -> ConvertResult, each converted at most once per module."""
    out, cache = tmp_path_factory.mktemp("et"), {}

    def get(name: str, backend: str, precision: str) -> ConvertResult:
        key = (name, backend, precision)
        if key not in cache:
            opts = ConvertOptions(precision=precision, backend=backend,
                                  calib_count=CALIB if precision in ("int8", "mixed") else 32)
            (cache[key],) = convert(trained_tiny(name), "executorch", opts, out, show_progress=False)
        return cache[key]
    return get


@pytest.fixture(scope="module", params=[(f, p) for f in TINY for p in XNNPACK], ids=lambda fp: "-".join(fp))
def xnn(request, converted):
    name, precision = request.param
    return name, precision, converted(name, "xnnpack", precision)


@pytest.fixture(scope="module", params=[(f, p) for f in TINY for p in COREML], ids=lambda fp: "-".join(fp))
def coreml(request, converted):
    name, precision = request.param
    return name, precision, converted(name, "coreml", precision)


def test_one_fully_delegated_xnnpack_subgraph(xnn):
    _, _, r = xnn
    rep = r.report
    assert rep["backend"] == "xnnpack"
    assert rep["delegated_subgraphs"] == 1, rep
    assert rep["non_delegated"] == {}, f"ops left outside XNNPACK: {rep['non_delegated']}"
    assert rep["fully_delegated"] is True and rep["delegated_ops"] > 20


def test_parity(xnn):
    name, precision, r = xnn
    p, img = r.parity, r.parity["images"]
    assert p["status"] == "passed", p["failures"]
    assert img["count"] == 8 and p["random"]["count"] == 4
    assert img["nonfinite_output"] == 0 and p["random"]["nonfinite_output"] == 0
    if precision == "fp32":
        for m in (img, p["random"]):
            assert m["max_abs_ratio"] <= 1e-4 and m["cosine_min"] > 0.99999
        return
    assert p["thresholds"] == {"min_cosine": 0.97, "min_top1": 0.98}
    assert img["cosine_mean"] >= 0.97 and img["cosine_min"] > 0.95
    # Trained weights: at least one decisive image, so top-1 is judged, not skipped.
    assert img["decisive"] >= 1 and img["top1_agreement_decisive"] >= 0.98
    assert 0 < img["max_abs_ratio"] < 0.5  # quantized: close, never bit-exact


def test_manifest_and_files(xnn):
    name, precision, r = xnn
    files = {f.name for f in r.bundle.iterdir()}
    assert files == {"model.pte", "manifest.json", "labels.txt", "reference.npz"}
    assert r.bundle.name == f"{name}-executorch-xnnpack-{precision}"
    assert (r.bundle / "model.pte").read_bytes()[4:6] == b"ET"
    m = read_bundle(r.bundle).manifest
    assert (m.target, m.backend, m.precision) == ("executorch", "xnnpack", precision)
    assert m.input.shape == (1, 3, 64, 64) and m.input.layout == "NCHW"
    assert m.output.shape == (1, 10) and m.output.kind == "logits"
    assert m.model.checkpoint_sha256 is None  # a module was passed, not a file
    assert m.parity["status"] == "passed" and m.report["fully_delegated"] is True
    if precision == "fp32":
        assert m.conversion["calibration"] is None and "quantize_ops" not in m.report
    else:
        assert m.conversion["calibration"] == "generated" and m.conversion["calib_count"] == CALIB


@pytest.fixture(scope="module", params=[(f, p) for f in TINY for p in XNNPACK[1:]], ids=lambda fp: "-".join(fp))
def quant(request, converted):
    name, precision = request.param
    return name, precision, converted(name, "xnnpack", precision)


def test_quantized_report_says_what_stays_float(quant):
    name, precision, r = quant
    rep = r.report
    assert sum(rep["quantize_ops"].values()) > 0 and rep["int8_ops"]["conv2d"] >= 5
    assert rep["float_ops"], "every zoo family keeps some ops (activations, softmax, ...) float"
    if precision == "mixed":
        # convs int8 (an add, or a table activation: converters/quant_int8_ops.py, between two int8 convs outside
        # attention runs int8 in XNNPACK too) ...
        assert set(rep["int8_ops"]) <= {"conv2d", "add", "hardswish", "sigmoid"}, rep["int8_ops"]
        assert rep["int8_ops"].get("add", 0) <= 2, rep["int8_ops"]
        assert "linear" in rep["float_ops"] or "bmm" in rep["float_ops"]
        assert any("Attention" in t for t in rep["float_modules"])  # ... attention float
    else:
        assert rep["float_modules"] == []
        assert rep["int8_ops"].get("add", 0) >= 1  # residual adds are int8 too


@pytest.mark.parametrize("name", TINY)
def test_mixed_quantizes_less_than_int8(converted, name):
    """Same model: mixed leaves attention (and the elementwise ops) float, so fewer int8 ops and quantize nodes.

    No size ordering is asserted: at 20-60k parameters the XNNPACK graph's per-tensor quantization records outweigh
    the int8 weight savings (measured: int8 .pte 0-4% larger than mixed, about the size of fp32).
    """
    int8, mixed = converted(name, "xnnpack", "int8"), converted(name, "xnnpack", "mixed")
    n_int8, n_mixed = (sum(r.report["int8_ops"].values()) for r in (int8, mixed))
    assert 0 < n_mixed < n_int8
    q_int8, q_mixed = (r.report["quantize_ops"]["quantize_per_tensor"] for r in (int8, mixed))
    assert 0 < q_mixed < q_int8


def test_coreml_delegate_pte(coreml):
    name, precision, r = coreml
    assert r.bundle.name == f"{name}-executorch-coreml-{precision}"
    assert (r.bundle / "model.pte").read_bytes()[4:6] == b"ET"
    rep = r.report
    assert rep["backend"] == "coreml" and rep["delegated_subgraphs"] == 1
    assert rep["non_delegated"] == {} and rep["fully_delegated"] is True and rep["delegated_ops"] > 20
    assert r.parity["status"] == "not_run" and "Core ML" in r.parity["reason"]
    m = read_bundle(r.bundle).manifest
    assert (m.backend, m.precision) == ("coreml", precision)
    assert m.conversion["deployment_target"] == "iOS17"  # the target's default, written down


def test_backend_precision_table():
    t = get_target("executorch")
    assert t.default_precision() == "fp32"
    assert t.backend_precisions["xnnpack"] == XNNPACK
    assert t.backend_precisions["coreml"] == COREML
