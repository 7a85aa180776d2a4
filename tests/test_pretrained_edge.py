"""The pretrained-compatible variants keep every edge property of the zoo (docs/DESIGN.md, "Published weights").

MobileViT v1/v2 with `norm="exact"` (LayerNorm / GroupNorm(1) written by models/norms.py, the form published
checkpoints load into): torch.export with rank <= 4 and no layer_norm/group_norm op, ONE fully delegated XNNPACK
subgraph, 0 TRANSPOSE in TFLite (NHWC I/O), and an ANE-ready Core ML fp16 program. Checked on the tiny variants
with realistic weights (same blocks as the published sizes; conversions stay seconds). efficientnet_lite0 (the TF
"same" padding as explicit pads) is checked at full size in tests/test_efficientnet_photos.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge_sdk.converters.base import ConvertOptions
from edge_sdk.converters.pipeline import convert
from edge_sdk.models import create_model
from edge_sdk.models.norms import EXACT_NORMS
from edge_sdk.runtime.realistic import fill_realistic_weights

pytestmark = pytest.mark.slow

EXACT = ("mobilevit_tiny", "mobilevitv2_tiny")
FORBIDDEN = ("layer_norm", "group_norm", "native_layer_norm", "native_group_norm", "unfold", "im2col")


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, norm="exact")
    model.name = name
    assert any(isinstance(m, EXACT_NORMS) for m in model.modules())
    return fill_realistic_weights(model, seed=0)


@pytest.mark.parametrize("name", EXACT)
def test_export_has_no_norm_ops_and_rank_at_most_4(name):
    model = _model(name).reparameterize()
    ep = torch.export.export(model, model.example_inputs(1)).run_decompositions()
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not [op for op in ops if any(f in op for f in FORBIDDEN)], ops
    assert any("rsqrt" in op for op in ops)  # the exact norms are really in the graph
    ranks = [v.dim() for n in ep.graph.nodes for v in [n.meta.get("val")] if isinstance(v, torch.Tensor)]
    assert max(ranks) <= 4


@pytest.mark.parametrize("name", EXACT)
def test_one_fully_delegated_xnnpack_subgraph(name, tmp_path):
    (res,) = convert(_model(name), "executorch", ConvertOptions(precision="fp32"), tmp_path, show_progress=False)
    rep = res.report
    assert rep["delegated_subgraphs"] == 1 and rep["non_delegated"] == {}, rep
    assert rep["fully_delegated"] is True
    assert res.parity["status"] == "passed", res.parity


def test_no_transpose_in_tflite(tmp_path):
    from edge_sdk.converters import tflite as T
    from edge_sdk.converters.tflite_report import build_report

    class Both(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = (_model(n).reparameterize() for n in EXACT)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)
    path = tmp_path / "exact.tflite"
    torch.set_num_threads(1)
    path.write_bytes(T.convert_fp32(Both().eval(), torch.randn(1, 3, 64, 64), nhwc=True))
    report = build_report(path)
    assert report["transpose_count"] == 0 and "TRANSPOSE" not in report["op_histogram"], report["transposes"]
    assert report["op_histogram"].get("RSQRT", 0) >= 4


@pytest.mark.parametrize("name", EXACT)
def test_coreml_fp16_is_ane_ready(name, tmp_path):
    pytest.importorskip("coremltools")
    from edge_sdk.converters import coreml as C
    model = _model(name).reparameterize()
    art = C.CoreMLTarget().export(model, model.example_inputs(1)[0], ConvertOptions(precision="fp16"),
                                  tmp_path, lambda: [])
    assert art.report["issues"] == [] and art.report["ane_ready"] is True, art.report["issues"][:5]
