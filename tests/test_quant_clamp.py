"""ReLU6 after a conv is observed after the clamp (converters/quant_clamp.py), and still lowers to one fused kernel.

The model below has a pre-activation range of about +-60 around a ReLU6: with XNNPACKQuantizer's own annotation the
8-bit scale is set by that range, with the clamp-aware one by [0, 6].
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edge_sdk.converters import executorch as et
from edge_sdk.converters.quant_clamp import move_observers_after_clamps
from model_helpers import plain_quantizer, quantized


def wide_relu6_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU6(), nn.Conv2d(16, 8, 1), nn.ReLU6(),
                      nn.Conv2d(8, 4, 1)).eval()
    with torch.no_grad():
        m[0].weight.mul_(30.0)  # pre-activations far outside [0, 6]
    return m


def relative_error(q: torch.fx.GraphModule, model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = model(x)
        out = torch.cat([q(xi) for xi in x.split(1)])
    return float((out - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def data() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    return wide_relu6_model(), torch.rand(16, 3, 16, 16) * 2 - 1


def test_clamp_aware_int8_error_is_a_fraction_of_the_shared_observer_error(data):
    model, x = data
    plain = relative_error(quantized(model, plain_quantizer(), x), model, x)
    aware = relative_error(quantized(model, et.make_quantizer(model, "int8"), x), model, x)
    assert aware < 0.03, aware
    assert aware * 1.6 < plain, (aware, plain)  # measured 0.017 vs 0.032


def test_every_conv_relu6_pair_moves_and_nothing_else():
    model = wide_relu6_model()
    gm = torch.export.export(model, (torch.zeros(1, 3, 16, 16),)).module()
    quantizer = plain_quantizer()
    gm = quantizer.transform_for_annotation(gm)
    quantizer.annotate(gm)
    assert move_observers_after_clamps(gm) == 2  # two conv -> ReLU6 pairs; the last conv has no clamp
    clamps = [n for n in gm.graph.nodes if "hardtanh" in str(n.target)]
    for clamp in clamps:
        assert clamp.meta["quantization_annotation"].output_qspec is not None
        assert clamp.args[0].meta["quantization_annotation"].output_qspec is None


def test_lowered_int8_is_one_subgraph_with_the_clamp_fused(data):
    model, x = data
    program = et.quantize(model, x[:1], "int8", lambda: [x])
    split = et.precision_split(program)
    assert split["int8_ops"].get("conv2d") == 3 and "conv2d" not in split["float_ops"], split
    assert "hardtanh" not in split["float_ops"], split
    from executorch.exir import to_edge_transform_and_lower
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    report = et.delegation_report(edge, "xnnpack")
    assert report["fully_delegated"], report
