"""int8 rounding of depthwise conv weights fitted to calibration data, applied before either quantizer sees the model.

Why: a depthwise kernel has only 9 or 25 taps, so its rounding errors do not average out as they do over the
hundreds of inputs of a 1x1 conv, and which errors matter depends on the input. Trained high-pass kernels (large
taps summing to ~0: EfficientNet-Lite0's first depthwise conv has channels with taps of +-5 to +-17 and a sum of
0.01) stop cancelling on flat image regions when each tap rounds to its nearest grid point alone; smooth kernels
on textured input care about each tap instead. Measured on efficientnet_lite0's published weights (int8 weights
only, 112 real-photo views): round-to-nearest gave top-1 agreement 93.8 % with fp32 (cosine 0.988), all of it from
that one layer; keeping each kernel's sum on the grid gave 100 % (0.997) but cost a trained mobilevit_tiny its
worst parity image (cosine 0.988 -> 0.943). So the rounding is chosen from the data, per channel: with P the
kernel-sized input patches the calibration images give that channel, M = E[p p^T], a rounding error d (in grid
steps) adds d^T M d to the channel's expected squared output error; each tap may round down or up (AdaRound's
search space, Nagel et al., ICML 2020), and a greedy descent flips the tap that lowers d^T M d most until none
does. Round-to-nearest is the starting point, so the local error never gets worse than it.

The weights are snapped onto exactly the grid both quantizers then use (symmetric per output channel, scale =
max|w| / 127: XNNPACKQuantizer's PerChannelMinMaxObserver and ai-edge-quantizer's symmetric int8), with the tap that
sets the scale left alone, so re-quantizing them is lossless and the scale does not move.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

QMAX = 127  # symmetric int8, narrow range
MIN_SCALE = 2.0 ** -12  # XNNPACKQuantizer's weight observer eps: channels this small are left as they are


def is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def fit_rounding(weight: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
    """(C, 1, k, k) depthwise weights and (C, k*k, k*k) input patch moments E[p p^T] -> the weights on the
    per-channel int8 grid, each tap rounded down or up so that d^T M d is (greedily) smallest."""
    flat = weight.detach().reshape(weight.shape[0], -1).double()
    scale = flat.abs().amax(1, keepdim=True) / QMAX
    x = flat / scale.clamp_min(1e-30)
    q = x.round()
    frozen = torch.zeros_like(q, dtype=torch.bool)
    frozen[torch.arange(len(q)), x.abs().argmax(1)] = True  # the tap that sets the scale
    frozen |= (scale < MIN_SCALE)  # the observer's eps, not max|w|, sets this channel's grid: leave it
    m = moments.double()
    for _ in range(flat.shape[1]):
        if not _flip_best(x, q, m, frozen):
            break
    out = torch.where(scale < MIN_SCALE, flat, q * scale)
    return out.reshape(weight.shape).to(weight.dtype)


def _flip_best(x: torch.Tensor, q: torch.Tensor, m: torch.Tensor, frozen: torch.Tensor) -> bool:
    """In place: per channel, move the one tap to its other neighbouring grid point that lowers d^T M d most."""
    d = q - x  # (C, T) rounding error in grid steps
    step = torch.where(d > 0, -1.0, 1.0).to(d)  # towards the other neighbour of x
    step = torch.where((d.abs() < 1e-12) | ((q + step).abs() > QMAX) | frozen | ((q + step - x).abs() >= 1),
                       torch.zeros_like(step), step)
    md = torch.einsum("cij,cj->ci", m, d)
    gain = 2 * step * md + step * step * torch.diagonal(m, dim1=1, dim2=2)  # change of d^T M d
    gain = torch.where(step == 0, torch.full_like(gain, float("inf")), gain)
    best = gain.argmin(1)
    rows = torch.arange(len(q))
    better = gain[rows, best] < -1e-12 * torch.diagonal(m, dim1=1, dim2=2).amax(1).clamp_min(1e-30)
    if not better.any():
        return False
    q[rows[better], best[better]] += step[rows[better], best[better]]
    return True


def patch_moments(model: nn.Module, convs: list[nn.Conv2d], batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """E[p p^T] of each depthwise conv's kernel-sized input patches over the calibration batches, per channel."""
    sums = [None] * len(convs)
    counts = [0] * len(convs)

    def hook(i: int) -> Callable:
        def record(module: nn.Conv2d, args: tuple) -> None:
            for x in args[0].detach().double().split(1):  # one image at a time: patches of early layers are large
                patches = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding,
                                   stride=module.stride)  # (1, C*k*k, L)
                p = patches.reshape(module.in_channels, -1, patches.shape[-1])  # (C, T, L)
                s = torch.einsum("ctl,cul->ctu", p, p)
                sums[i] = s if sums[i] is None else sums[i] + s
                counts[i] += patches.shape[-1]
        return record

    handles = [c.register_forward_pre_hook(hook(i)) for i, c in enumerate(convs)]
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for h in handles:
            h.remove()
    return [s / max(n, 1) for s, n in zip(sums, counts)]


@torch.no_grad()
def fit_depthwise_rounding(model: nn.Module, calib: Callable[[], list[torch.Tensor]]) -> tuple[nn.Module, int]:
    """A copy of `model` whose depthwise conv weights sit on the int8 grid, rounded to fit the calibration inputs;
    the number of convs adjusted. The caller's model is untouched (its fp32 bundles keep the exact weights)."""
    model = copy.deepcopy(model).eval()
    convs = [m for m in model.modules() if is_depthwise(m)]
    if not convs:
        return model, 0
    moments = patch_moments(model, convs, calib())
    for conv, m in zip(convs, moments):
        conv.weight.copy_(fit_rounding(conv.weight, m))
    return model, len(convs)
