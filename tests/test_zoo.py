"""Cross-zoo contract tests: every registered model, standard and tiny, obeys the edge-op rules.

These are the rules that let every target convert the zoo (docs/DESIGN.md): exportable, all tensors rank <= 4, no
unfold/im2col/col2im/GroupNorm/LayerNorm, conv+BN fusion that does not change outputs, published parameter counts.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edge_sdk.models import count_params, create_model, get_entry, list_models, reparameterize_model

ALL = list_models()
FORBIDDEN = ("unfold", "im2col", "col2im", "group_norm", "layer_norm")
FAMILIES = ("mobilevit", "mobilevitv2", "levit", "pbhybrid", "cctt")


def test_every_family_is_registered_with_a_tiny_variant():
    fams = {get_entry(n).family for n in ALL}
    assert set(FAMILIES) <= fams
    tiny = {get_entry(n).family for n in list_models() if get_entry(n).tiny}
    assert set(FAMILIES) <= tiny


def _calibrate_bn(model: nn.Module, x: torch.Tensor, seed: int = 0) -> None:
    """Give BN layers trained-like state so fusing them is really exercised and activations stay O(1).

    Random affine parameters, then running statistics measured on real batches (train-mode forward passes with a
    cumulative average), as training would leave them. Default BN state (mean 0, var 1) would both make fusion
    trivial and let deep random residual stacks blow activations up to 1e14, where float32 cancellation hides bugs.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
            m.momentum = None  # cumulative moving average over the calibration passes
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn_like(x))
    model.eval()


def _tensor_ranks(graph: torch.fx.Graph):
    for node in graph.nodes:
        vals = node.meta.get("val")
        for v in vals if isinstance(vals, (list, tuple)) else [vals]:
            if isinstance(v, torch.Tensor):
                yield node, v.dim()


@pytest.mark.parametrize("name", ALL)
def test_export_is_edge_friendly(name):
    model = create_model(name).eval()
    ep = torch.export.export(model, model.example_inputs(1)).run_decompositions()
    too_big = [(n.name, r) for n, r in _tensor_ranks(ep.graph) if r > 4]
    assert not too_big, f"{name}: tensors of rank > 4: {too_big[:5]}"
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    bad = sorted(op for op in ops if any(f in op for f in FORBIDDEN))
    assert not bad, f"{name}: forbidden ops {bad}"
    out = ep.module()(*model.example_inputs(1))
    assert out.shape == (1, 1000)


@pytest.mark.parametrize("name", ALL)
def test_reparameterize_keeps_outputs(name):
    """Fusion is exact algebra: checked in float64, where float32 rounding cannot hide or fake a difference.

    (In float32 the deep standard models with random weights reach logits of ~1e4 and differ by rounding alone at
    ~2e-5 of that scale; the tiny variants are checked in float32 too.)
    """
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    _calibrate_bn(model, model.example_inputs(2)[0])
    x = model.example_inputs(1)[0]
    dtypes = [torch.float64] + ([torch.float32] if get_entry(name).tiny else [])
    for dtype in dtypes:
        m, xd = model.to(dtype), x.to(dtype)
        with torch.no_grad():
            ref = m(xd)
            fused = reparameterize_model(m)
            out = fused(xd)
            assert torch.equal(m(xd), ref)  # the original is untouched (reparameterize_model copies)
        assert not any(_inside_convbn(fused, b) for b in fused.modules() if isinstance(b, nn.BatchNorm2d)), \
            "ConvBN left unfused"
        scale = ref.abs().max().item()
        assert scale > 0
        assert (out - ref).abs().max().item() <= 1e-5 * scale, (name, dtype)


def _inside_convbn(model: nn.Module, bn: nn.Module) -> bool:
    from edge_sdk.models.layers import ConvBN
    return any(isinstance(m, ConvBN) and m.bn is bn for m in model.modules())


PUBLISHED = [n for n in ALL if get_entry(n).published_params]


@pytest.mark.parametrize("name", PUBLISHED)
def test_param_count_matches_paper(name):
    entry = get_entry(name)
    params = count_params(create_model(name, num_classes=1000)) / 1e6
    assert abs(params - entry.published_params) <= 0.05 * entry.published_params, \
        f"{name}: {params:.2f}M vs published {entry.published_params}M"


def test_published_table_covers_the_issue():
    expected = {"mobilevit_xxs": 1.3, "mobilevit_xs": 2.3, "mobilevit_s": 5.6, "mobilevitv2_050": 1.4,
                "mobilevitv2_100": 4.9, "mobilevitv2_200": 18.4, "levit_128s": 7.8, "levit_128": 9.2,
                "levit_192": 11.0, "levit_256": 19.0}
    for name, m in expected.items():
        assert get_entry(name).published_params == pytest.approx(m, rel=0.01), name


@pytest.mark.parametrize("name", [n for n in ALL if get_entry(n).tiny])
def test_tiny_variants_have_the_contract(name):
    model = create_model(name, num_classes=7).eval()
    (x,) = model.example_inputs(3)
    feats = model.forward_features(x)
    assert feats.dim() == 4 and feats.shape[0] == 3
    assert model.forward_head(feats).shape == (3, 7)
    d = model.deploy
    assert d.input_size == x.shape[-1] and len(d.mean) == 3 and len(d.std) == 3
    assert count_params(model) < 500_000
