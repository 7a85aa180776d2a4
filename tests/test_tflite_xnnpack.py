"""converters/tflite_xnnpack.py and the int8 island rule: LiteRT's XNNPACK takes the whole graph as ONE partition.

A small attention block reproduces both fp32 splitters (per-head `q @ k^T` that litert-torch writes as
FULLY_CONNECTED with computed weights, a concat of 8 heads) and the int8 ones (BATCH_MATMUL of two activations,
SOFTMAX, HARD_SWISH have no int8 XNNPACK kernel here). Values, not timings.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge_sdk.profile import xnnpack_outside

HEADS, D, N = 8, 8, 16


class Heads(nn.Module):
    """Per-head channel slices (as LeViT does), batch-1 bmm, Hardswish, concat of all heads."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Conv2d(16, HEADS * D, 1) for _ in range(3))
        self.out = nn.Conv2d(HEADS * D, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tok = [t(x).flatten(2).transpose(1, 2) for t in (self.q, self.k, self.v)]  # (1, N, H*D)
        outs = []
        for h in range(HEADS):
            q, k, v = (t[:, :, h * D:(h + 1) * D] for t in tok)
            attn = torch.bmm(q, k.transpose(1, 2)).softmax(-1)
            outs.append(torch.bmm(attn, v))
        y = nn.functional.hardswish(torch.cat(outs, dim=2))  # (1, N, H*D)
        return self.out(y.transpose(1, 2).reshape(1, HEADS * D, 4, 4)).mean((2, 3))


@pytest.fixture(scope="module")
def fp32() -> bytes:
    """litert-torch's own output, before the rewrite `convert_fp32` applies."""
    import litert_torch
    torch.manual_seed(0)
    with torch.no_grad():
        return bytes(litert_torch.convert(Heads().eval(), (torch.randn(1, 16, 4, 4),)).model_content())


def test_convert_fp32_applies_the_rewrite():
    from edge_sdk.converters.tflite import convert_fp32
    torch.manual_seed(0)
    assert xnnpack_outside(convert_fp32(Heads().eval(), torch.randn(1, 16, 4, 4), nhwc=False))[0] == 1


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()


def _ops(data: bytes) -> dict[str, int]:
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter
    return dict(Counter(o["op_name"] for o in Interpreter(model_content=data)._get_ops_details()))


def test_fp32_rewrite_gives_one_partition_and_the_same_function(fp32):
    from edge_sdk.converters.tflite_xnnpack import one_xnnpack_partition
    parts, _, outside = xnnpack_outside(fp32)
    assert parts > 1 and {o["op"] for o in outside} == {"FULLY_CONNECTED", "CONCATENATION"}
    fixed, counts = one_xnnpack_partition(fp32)
    assert counts == {"fully_connected_to_batch_matmul": HEADS, "concatenations_split": 1}
    assert xnnpack_outside(fixed)[0] == 1 and xnnpack_outside(fixed)[2] == []
    before, after = _ops(fp32), _ops(fixed)
    assert after.get("TRANSPOSE", 0) == before.get("TRANSPOSE", 0)  # no layout op added
    assert after["BATCH_MATMUL"] == before.get("BATCH_MATMUL", 0) + HEADS
    assert after["CONCATENATION"] == before["CONCATENATION"] + 2  # 8 inputs -> 2 groups of 4 + the top
    x = np.random.default_rng(0).standard_normal((1, 16, 4, 4)).astype(np.float32)
    ref, out = _run(fp32, x), _run(fixed, x)
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert one_xnnpack_partition(fixed)[1] == {"fully_connected_to_batch_matmul": 0, "concatenations_split": 0}


def test_int8_keeps_float_what_xnnpack_cannot_run(fp32):
    from edge_sdk.converters import tflite as T
    from edge_sdk.converters.tflite_xnnpack import one_xnnpack_partition
    fixed, _ = one_xnnpack_partition(fp32)
    calib = lambda: [torch.randn(8, 16, 4, 4, generator=torch.Generator().manual_seed(1))]  # noqa: E731
    built = T.quantize(fixed, "int8", calib, nhwc=False)
    parts, _, outside = xnnpack_outside(built.data)
    assert parts == 1 and outside == []
    reasons = [k for k in built.kept_float if "XNNPACK" in k["reason"]]
    assert reasons and {k["op"] for k in reasons} <= {"BATCH_MATMUL", "SOFTMAX", "HARD_SWISH", "FULLY_CONNECTED",
                                                       "ADD", "AVERAGE_POOL_2D", "CONCATENATION"}
    assert built.recipe == f"static_wi8_ai8 + {len(built.kept_float)} ops kept float"
    x = np.random.default_rng(0).standard_normal((1, 16, 4, 4)).astype(np.float32)
    from ai_edge_litert.interpreter import Interpreter
    d_in, d_out = (Interpreter(model_content=built.data).get_input_details()[0],
                   Interpreter(model_content=built.data).get_output_details()[0])
    s, z = d_in["quantization"]
    y = _run(built.data, np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)).astype(np.float32)
    s, z = d_out["quantization"]
    y, ref = (y - z) * s, _run(fp32, x)
    assert float(np.dot(y.ravel(), ref.ravel()) / np.linalg.norm(y) / np.linalg.norm(ref)) > 0.97
