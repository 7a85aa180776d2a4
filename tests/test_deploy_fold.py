"""Deploy-time folds for speed (docs/perf-findings.md): LeViT per-head bias constants, softmax scale in the q conv,
the two classifier heads averaged into one Linear; MobileViT's softmax scale in the q conv.

Each fold must be the same function (fp32 within 1e-5 of the output scale; float64 to 1e-9) and must keep the edge
properties: one fully delegated XNNPACK subgraph, rank <= 4 (TFLite TRANSPOSE: tests/test_transpose_free.py).
The op counts pin what the folds removed: no runtime slice of a constant and no MUL in LeViT's attention.
"""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch

from edge_sdk.models import create_model, levit, mobilevit, reparameterize_model
from edge_sdk.models.levit import HeadMerge, LeViTAttention
from model_helpers import calibrated

torch.set_num_threads(1)


def _max_err(model: torch.nn.Module, dtype: torch.dtype) -> tuple[float, float]:
    """(max |deploy - eval|, max |eval|) on a batch of 2, the eval model in training form as reference."""
    torch.manual_seed(0)
    model = model.eval().to(dtype)
    s = model.deploy.input_size
    x = torch.randn(2, 3, s, s, dtype=dtype)
    with torch.no_grad():
        ref = model(x)
        out = reparameterize_model(model)(x)
    return float((out - ref).abs().max()), float(ref.abs().max())


@pytest.mark.parametrize("name", ["levit_tiny", "mobilevit_tiny"])
def test_fp32_deploy_form_equals_eval_model(name):
    err, scale = _max_err(calibrated(name), torch.float32)
    assert scale > 0.01 and err <= 1e-5 * scale, (err, scale)


@pytest.mark.parametrize("name", ["levit_128s", "mobilevit_xxs"])
def test_float64_deploy_form_equals_eval_model_at_full_size(name):
    """Full-size models in float64: the folds are exact algebra, so only float64 rounding is left."""
    from edge_sdk.runtime.realistic import fill_realistic_weights
    err, scale = _max_err(fill_realistic_weights(create_model(name), seed=0), torch.float64)
    assert err <= 1e-9 * scale, (err, scale)


def test_levit_heads_merged_into_one_linear_and_training_form_untouched():
    model = calibrated("levit_tiny", num_classes=5)
    fused = reparameterize_model(model)
    assert model.head_dist is not None  # the caller's model keeps both heads (reparameterize_model copies)
    assert fused.head_dist is None and isinstance(fused.head_merge, HeadMerge)
    assert fused.head_merge.owner is fused  # the deepcopy re-pointed the owner reference
    assert not list(fused.head_merge.parameters()) and "head_merge" not in "".join(model.state_dict())
    linears = [n for n in torch.export.export(fused, fused.example_inputs(1)).graph.nodes
               if n.op == "call_function" and "linear" in str(n.target)]
    assert len(linears) == 1


@pytest.fixture
def sliced(monkeypatch):
    """Deploy form with per-head slices everywhere (no block-diagonal attention)."""
    monkeypatch.setattr(levit, "BLOCK_DIAG_MAX", 0)


@pytest.fixture
def folds_off(monkeypatch):
    """The deploy form before the folds (what benchmarks/bench_fold.py calls "before")."""
    monkeypatch.setattr(LeViTAttention, "deploy_folds", False)
    monkeypatch.setattr(mobilevit.Attention, "deploy_folds", False)


@pytest.mark.parametrize("form", ["block_diag", "sliced", "folds_off"])
def test_levit_tiny_every_deploy_form_equals_eval_model(form, request):
    if form != "block_diag":
        request.getfixturevalue(form)
    model = calibrated("levit_tiny")
    fused = reparameterize_model(model)
    attns = [m for m in fused.modules() if isinstance(m, LeViTAttention)]
    assert [m.block_diag for m in attns] == [form == "block_diag"] * 3  # 2x16, 2x16, 3x4 heads x keys
    assert [tuple(m.attention_bias().shape) for m in attns] == [(2, 16, 16), (2, 4, 16), (3, 4, 4)]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    fused.reparameterize()  # idempotent: the scale is not folded twice
    with torch.no_grad():
        assert torch.equal(fused(x), out)


def test_block_diagonal_attention_equals_per_head_attention():
    torch.manual_seed(0)
    for stride in (1, 2):
        a = LeViTAttention(16, 24, key_dim=4, heads=3, attn_ratio=2, resolution=4, stride=stride).eval()
        with torch.no_grad():
            a.bias_table.normal_()
        b = copy.deepcopy(a)
        reparameterize_model(a, inplace=True).reparameterize()  # children (ConvBN) first, then itself
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(levit, "BLOCK_DIAG_MAX", 0)
            reparameterize_model(b, inplace=True).reparameterize()
        assert a.block_diag and not b.block_diag
        torch.testing.assert_close(a.attention_bias(), b.attention_bias(), rtol=0, atol=0)
        x = torch.randn(2, 16, 4, 4)
        torch.testing.assert_close(a(x), b(x), rtol=1e-6, atol=1e-6)


def _xnnpack_ops(model: torch.nn.Module) -> tuple[dict, Counter]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edge_sdk.converters.executorch import delegation_report
    edge = to_edge_transform_and_lower(torch.export.export(model, model.example_inputs(1)),
                                       partitioner=[XnnpackPartitioner()])
    report = delegation_report(edge, "xnnpack")
    return report, Counter(report["delegated_by_op"])


def test_levit_tiny_lowering_sliced_vs_before(sliced, monkeypatch):
    """levit_tiny (2 + 2 + 3 heads), sliced form: 7 bias slices, 7 scale MULs, one head Linear and its `* 0.5`
    fewer than the form before the folds; still one fully delegated subgraph."""
    heads = 2 + 2 + 3
    report, ops = _xnnpack_ops(reparameterize_model(calibrated("levit_tiny", num_classes=10)))
    assert report["fully_delegated"] and report["delegated_subgraphs"] == 1, report
    assert ops["aten_slice_copy_tensor"] == 3 * heads  # q, k, v per head; no slice of a constant bias
    assert "aten_mul_tensor" not in ops and ops["aten_linear_default"] == 1
    monkeypatch.setattr(LeViTAttention, "deploy_folds", False)
    report0, ops0 = _xnnpack_ops(reparameterize_model(calibrated("levit_tiny", num_classes=10)))
    assert report0["fully_delegated"] and report0["delegated_subgraphs"] == 1, report0
    assert ops0["aten_slice_copy_tensor"] == 4 * heads and ops0["aten_mul_tensor"] == heads + 1
    assert ops0["aten_linear_default"] == 2
    assert report0["delegated_ops"] - report["delegated_ops"] >= 2 * heads + 3  # + the second head and its add


def test_levit_tiny_lowering_block_diagonal():
    """Block-diagonal: two bmm and one softmax per attention whatever its head count; no slice at all."""
    report, ops = _xnnpack_ops(reparameterize_model(calibrated("levit_tiny", num_classes=10)))
    assert report["fully_delegated"] and report["delegated_subgraphs"] == 1, report
    assert ops["aten_bmm_default"] == 2 * 3 and ops["aten__softmax_default"] == 3
    assert "aten_slice_copy_tensor" not in ops
    assert ops["aten_mul_tensor"] == 2 * 3  # the 0/1 masks of k and v


def test_mobilevit_tiny_lowering_after_the_scale_fold():
    """The only MULs left are SiLU's x * sigmoid(x): the per-head softmax-scale MULs are gone."""
    fused = reparameterize_model(calibrated("mobilevit_tiny", num_classes=10))
    report, ops = _xnnpack_ops(fused)
    assert report["fully_delegated"] and report["delegated_subgraphs"] == 1, report
    assert ops["aten_mul_tensor"] == ops["aten_sigmoid_default"] > 0
