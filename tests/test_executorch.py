"""ExecuTorch target: every tiny zoo family lowers to ONE fully delegated XNNPACK subgraph with fp32 parity;
int8 / mixed quantization with parity numbers; the Core ML delegate .pte is produced (parity not_run on Linux).

Conversions are the slow part (~5-25 s each), so each bundle is made once per module and shared by its tests.
"""
from __future__ import annotations

import json

import pytest
from edge_sdk.converters.base import ConvertOptions, get_target
from edge_sdk.converters.pipeline import convert

pytestmark = pytest.mark.slow

TINY = ["levit_tiny", "mobilevit_tiny", "mobilevitv2_tiny", "pbhybrid_micro", "cctt_micro"]
QUANT_FAMILIES = ["levit_tiny"]  # int8 PTQ of the other random-weight tiny models misses the bar: see docs/converters.md


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("et")


@pytest.fixture(scope="module", params=TINY)
def fp32_bundle(request, out_dir):
    (result,) = convert(request.param, "executorch", ConvertOptions(), out_dir, num_classes=10,
                        show_progress=False)
    return result


def test_fp32_one_fully_delegated_subgraph(fp32_bundle):
    report = fp32_bundle.report
    assert report["delegated_subgraphs"] == 1, report
    assert report["non_delegated"] == {}, f"ops left outside XNNPACK: {report['non_delegated']}"
    assert report["fully_delegated"] is True
    assert report["delegated_ops"] > 10


def test_fp32_parity_passed(fp32_bundle):
    p = fp32_bundle.parity
    assert p["status"] == "passed", p["failures"]
    for name in ("images", "random"):
        assert p[name]["max_abs_ratio"] <= 1e-4
        assert p[name]["cosine_min"] > 0.99999
    assert p["images"]["count"] == 8 and p["random"]["count"] == 4


def test_fp32_bundle_files(fp32_bundle):
    files = {p.name for p in fp32_bundle.bundle.iterdir()}
    assert files == {"model.pte", "manifest.json", "labels.txt", "reference.npz"}
    m = json.loads((fp32_bundle.bundle / "manifest.json").read_text())
    assert (m["target"], m["backend"], m["precision"]) == ("executorch", "xnnpack", "fp32")
    assert m["input"]["shape"] == [1, 3, 64, 64] and m["input"]["layout"] == "NCHW"
    assert m["output"]["shape"] == [1, 10] and m["output"]["kind"] == "logits"
    assert (fp32_bundle.bundle / "model.pte").read_bytes()[4:6] == b"ET"
    assert (fp32_bundle.bundle / "reference.npz").stat().st_size < 200_000


@pytest.fixture(scope="module", params=[(f, p) for f in QUANT_FAMILIES for p in ("int8", "mixed")],
                ids=lambda fp: f"{fp[0]}-{fp[1]}")
def quant_bundle(request, out_dir):
    name, precision = request.param
    return precision, _quantized(name, precision, out_dir)


def _quantized(name: str, precision: str, out_dir):
    """Seeded, trained-like weights (O(1) activations, decisive logits), so the parity numbers are reproducible."""
    import torch
    from edge_sdk.models import create_model
    from edge_sdk.runtime.realistic import fill_realistic_weights
    torch.manual_seed(0)
    model = fill_realistic_weights(create_model(name, num_classes=10), seed=0)
    opts = ConvertOptions(precision=precision, calib_count=8)
    (result,) = convert(model, "executorch", opts, out_dir, force=True, show_progress=False)
    return result


def test_mobilevitv2_int8_degrades_and_mixed_recovers_part(out_dir):
    """Known limit, measured: per-tensor int8 of MobileViTv2's multiplicative separable attention loses accuracy
    (tiny variant: mean cosine ~0.93, decisive top-1 ~71%); mixed precision (attention float) recovers part of it
    (~0.95, ~86%). Neither meets the int8 parity bar, and the manifest says so (status failed)."""
    int8, mixed = (_quantized("mobilevitv2_tiny", p, out_dir / p) for p in ("int8", "mixed"))
    assert int8.parity["status"] == "failed" and int8.parity["failures"]
    ci, cm = int8.parity["images"]["cosine_mean"], mixed.parity["images"]["cosine_mean"]
    assert 0.85 < ci < cm < 0.999
    assert int8.report["delegated_subgraphs"] == mixed.report["delegated_subgraphs"] == 1


def test_quantized_parity_numbers(quant_bundle):
    precision, r = quant_bundle
    p = r.parity
    assert p["status"] == "passed", p["failures"]
    img = p["images"]
    if img["decisive"]:
        assert img["top1_agreement_decisive"] >= 0.98
    assert img["cosine_mean"] >= 0.97 and img["cosine_min"] > 0.8
    assert 0 < img["max_abs_ratio"] < 1.0  # quantized: not bit-exact (mobilevitv2_tiny int8: 0.57 on random init)
    assert r.report["delegated_subgraphs"] >= 1


def test_quantized_report(quant_bundle):
    precision, r = quant_bundle
    q = r.report["quantize_ops"]
    assert sum(q.values()) > 0
    if precision == "mixed":
        assert r.report["float_modules"], "mixed must keep the attention modules float"
    m = json.loads((r.bundle / "manifest.json").read_text())
    assert m["precision"] == precision and m["conversion"]["calibration"] == "generated"


def test_mixed_quantizes_less_than_int8(out_dir):
    """Same model: mixed leaves attention float, so it has fewer quantize ops than int8 (no conversion needed)."""
    from edge_sdk.converters.executorch import export_program, make_quantizer
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from edge_sdk.models import create_model
    model = create_model("levit_tiny", num_classes=10).eval()
    x = model.example_inputs(1)[0]
    counts = {}
    for precision in ("int8", "mixed"):
        prepared = prepare_pt2e(export_program(model, x).module(), make_quantizer(model, precision))
        counts[precision] = sum("observer" in n.name or "activation_post_process" in n.name
                                for n in prepared.graph.nodes)
    assert 0 < counts["mixed"] < counts["int8"]


def test_coreml_delegate_pte(out_dir):
    opts = ConvertOptions(precision="fp16", backend="coreml")
    (r,) = convert("levit_tiny", "executorch", opts, out_dir, num_classes=10, show_progress=False)
    assert r.bundle.name == "levit_tiny-executorch-coreml-fp16"
    assert (r.bundle / "model.pte").stat().st_size > 1000
    assert r.report["backend"] == "coreml" and r.report["delegated_subgraphs"] >= 1
    assert r.parity["status"] == "not_run" and "Core ML" in r.parity["reason"]


def test_backend_precision_table():
    t = get_target("executorch")
    assert t.default_precision() == "fp32"
    assert t.backend_precisions["xnnpack"] == ("fp32", "int8", "mixed")
    assert "fp16" in t.backend_precisions["coreml"]
