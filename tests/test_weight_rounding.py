"""Depthwise int8 rounding fitted to the calibration inputs (converters/weight_rounding.py): on the quantizers' grid,
scale unchanged, never worse than round-to-nearest on the local error, and the DC case that motivated it fixed."""
from __future__ import annotations

import torch
from torch import nn

from edge_sdk.converters.weight_rounding import QMAX, fit_depthwise_rounding, fit_rounding, patch_moments


def edge_detectors(channels: int = 64, taps: int = 3) -> torch.Tensor:
    """High-pass kernels: large taps summing to ~0, like EfficientNet-Lite0's first depthwise conv."""
    torch.manual_seed(0)
    w = torch.randn(channels, 1, taps, taps) * 8
    return w - w.mean((1, 2, 3), keepdim=True) + 0.01


def grid(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = w.reshape(w.shape[0], -1).double()
    scale = flat.abs().amax(1, keepdim=True) / QMAX
    return flat / scale, scale


def local_error(q: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    d = q - x
    return torch.einsum("ci,cij,cj->c", d, m.double(), d)


def image_moments(w: torch.Tensor) -> torch.Tensor:
    """Patch moments of smooth, offset inputs (what a conv after a ReLU6 sees): strong DC, correlated taps."""
    torch.manual_seed(2)
    conv = nn.Conv2d(w.shape[0], w.shape[0], w.shape[-1], groups=w.shape[0], padding=1)
    x = torch.nn.functional.avg_pool2d(torch.rand(4, w.shape[0], 36, 36), 5, 1) * 4 + 1
    return patch_moments(nn.Sequential(conv), [conv], [x])[0]


def test_on_the_grid_with_the_same_scale_each_tap_rounded_down_or_up():
    w = edge_detectors()
    fitted = fit_rounding(w, image_moments(w))
    x, scale = grid(w)
    q, scale_after = grid(fitted)
    assert torch.allclose(scale_after, scale, rtol=1e-6)  # the tap that sets max|w| did not move
    assert torch.allclose(q, q.round(), atol=1e-4)  # integers: re-quantizing is lossless
    assert ((q.round() == x.floor()) | (q.round() == x.ceil())).all()


def test_never_worse_than_nearest_and_better_on_image_like_input():
    w = edge_detectors()
    m = image_moments(w)
    x, _ = grid(w)
    fitted = grid(fit_rounding(w, m))[0].round()
    nearest, ours = local_error(x.round(), x, m), local_error(fitted, x, m)
    assert (ours <= nearest + 1e-9).all()
    assert ours.sum() < 0.5 * nearest.sum(), (ours.sum(), nearest.sum())


def test_flat_input_keeps_each_kernel_sum_and_white_input_keeps_nearest():
    """M = all ones (only the DC of the input matters): each kernel's sum lands within half a step of the float
    sum, which round-to-nearest misses on these kernels. M = identity (independent taps): nearest is optimal."""
    w = edge_detectors()
    x, _ = grid(w)
    ones = torch.ones(len(w), 9, 9)
    summed = grid(fit_rounding(w, ones))[0].round()
    assert ((summed.sum(1) - x.sum(1)).abs() <= 0.5 + 1e-6).all()
    assert ((x.round().sum(1) - x.sum(1)).abs() > 0.5).sum() >= 10
    eye = torch.eye(9).expand(len(w), 9, 9)
    assert torch.equal(grid(fit_rounding(w, eye))[0].round(), x.round())


def test_xnnpack_weight_observer_sees_the_same_integers():
    from torchao.quantization.pt2e import PerChannelMinMaxObserver
    w = edge_detectors()
    fitted = fit_rounding(w, image_moments(w))
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.int8, quant_min=-127, quant_max=127,
                                   qscheme=torch.per_channel_symmetric, eps=2 ** -12)
    obs(fitted)
    scale, zp = obs.calculate_qparams()
    ints = torch.fake_quantize_per_channel_affine(fitted, scale, zp.int(), 0, -127, 127)
    assert torch.allclose(ints, fitted, atol=1e-5)


def test_only_depthwise_convs_of_a_copy_change():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, groups=8, padding=1),
                          nn.Conv2d(8, 4, 1)).eval()
    with torch.no_grad():
        model[2].weight.copy_(edge_detectors(8))
    before = [p.clone() for p in model.parameters()]
    fitted, count = fit_depthwise_rounding(model, lambda: [torch.rand(4, 3, 16, 16)])
    assert count == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the caller's model untouched
    assert torch.equal(fitted[0].weight, model[0].weight) and torch.equal(fitted[3].weight, model[3].weight)
    assert not torch.equal(fitted[2].weight, model[2].weight)


def test_tiny_channels_are_left_alone():
    w = edge_detectors(4)
    w[2] = w[2] * 1e-7  # below the observer's eps-limited grid
    assert torch.equal(fit_rounding(w, torch.ones(4, 9, 9))[2], w[2])
