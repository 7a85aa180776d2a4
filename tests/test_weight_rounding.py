"""Sum-preserving rounding of depthwise weights (converters/weight_rounding.py): on the quantizers' grid, kernel
sums kept, scale unchanged, and the efficientnet_lite0 layer that motivated it fixed."""
from __future__ import annotations

import torch
from torch import nn

from edge_sdk.converters.weight_rounding import QMAX, snap_depthwise_weights, sum_preserving_round


def edge_detectors(channels: int = 64, taps: int = 3) -> torch.Tensor:
    """High-pass kernels: large taps summing to ~0, like EfficientNet-Lite0's first depthwise conv."""
    torch.manual_seed(0)
    w = torch.randn(channels, 1, taps, taps) * 8
    return w - w.mean((1, 2, 3), keepdim=True) + 0.01


def grid(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = w.reshape(w.shape[0], -1).double()
    scale = flat.abs().amax(1, keepdim=True) / QMAX
    return flat / scale, scale


def test_on_the_grid_with_the_same_scale_and_each_sum_rounded_once():
    w = edge_detectors()
    snapped = sum_preserving_round(w)
    x, scale = grid(w)
    q, scale_after = grid(snapped)
    assert torch.allclose(scale_after, scale, rtol=1e-6)  # the tap that sets max|w| did not move
    assert torch.allclose(q, q.round(), atol=1e-4)  # integers: re-quantizing is lossless
    assert torch.equal(q.round().sum(1), x.sum(1).round())  # each kernel's sum on its nearest grid point
    assert (q.round() - x).abs().max() < 1.5  # no tap moved by more than one step beyond round-to-nearest


def test_plain_rounding_breaks_the_sums_this_fixes():
    x, _ = grid(edge_detectors())
    assert (x.round().sum(1) - x.sum(1).round()).abs().max() >= 2  # the error the module exists for


def test_xnnpack_weight_observer_sees_the_same_integers():
    from torchao.quantization.pt2e import PerChannelMinMaxObserver
    snapped = sum_preserving_round(edge_detectors())
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.int8, quant_min=-127, quant_max=127,
                                   qscheme=torch.per_channel_symmetric, eps=2 ** -12)
    obs(snapped)
    scale, zp = obs.calculate_qparams()
    ints = torch.fake_quantize_per_channel_affine(snapped, scale, zp.int(), 0, -127, 127)
    assert torch.allclose(ints, snapped, atol=1e-5)


def test_only_depthwise_convs_of_a_copy_change():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        model[1].weight.copy_(edge_detectors(8))
    before = [p.clone() for p in model.parameters()]
    snapped, count = snap_depthwise_weights(model)
    assert count == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the caller's model untouched
    assert torch.equal(snapped[0].weight, model[0].weight) and torch.equal(snapped[2].weight, model[2].weight)
    assert not torch.equal(snapped[1].weight, model[1].weight)


def test_tiny_channels_are_left_alone():
    w = edge_detectors(4)
    w[2] = w[2] * 1e-7  # below the observer's eps-limited grid
    assert torch.equal(sum_preserving_round(w)[2], w[2])


def test_efficientnet_first_depthwise_conv_keeps_its_dc_response():
    """The layer whose round-to-nearest int8 weights alone cost 6 points of real-photo agreement: on a flat input the
    snapped kernels give the float output to within half a grid step, plain rounding up to several."""
    from edge_sdk.models import create_model, reparameterize_model
    conv = reparameterize_model(create_model("efficientnet_lite0", pretrained=True)).blocks[0].dw.conv
    w = conv.weight.detach()
    x, scale = grid(w)
    flat_response = (x.sum(1) * scale[:, 0])  # output on a constant input of 1
    plain = x.round().sum(1) * scale[:, 0]
    snapped = grid(sum_preserving_round(w))[0].round().sum(1) * scale[:, 0]
    live = scale[:, 0] > 2 ** -12
    plain_err, snapped_err = (plain - flat_response)[live].abs(), (snapped - flat_response)[live].abs()
    half_step = scale[live, 0] * 0.5 + 1e-9
    assert (plain_err > half_step).sum() >= 4 and plain_err.mean() > 1.8 * snapped_err.mean()  # 0.019 vs 0.009
    assert (snapped_err <= half_step).all()
