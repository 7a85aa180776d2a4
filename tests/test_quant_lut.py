"""SiLU and Hardswish run on XNNPACK's int8 table kernels in an ExecuTorch int8 .pte (converters/quant_lut.py).

Before, both stayed fp32 between dequantize and quantize (XNNPACKQuantizer annotates neither, and the partitioner
accepted them in fp32 only); the profile of mobilevitv2_050 int8 had them at 47% of the run.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge_sdk.converters import executorch as et
from edge_sdk.converters.quant_lut import decompose_silu
from model_helpers import plain_quantizer, quantized

QUANT = "quantize_per_tensor"


def act_model(act: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 32, 1), act(), nn.Conv2d(32, 8, 1)).eval()


def calib_inputs() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(8, 8, 12, 12)


def run_pte(program: torch.export.ExportedProgram, partitioner, x: torch.Tensor) -> np.ndarray:
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    edge = to_edge_transform_and_lower(program, partitioner=[partitioner])
    rep = et.delegation_report(edge, "xnnpack")
    assert rep["fully_delegated"] and rep["delegated_subgraphs"] == 1, rep
    buffer = edge.to_executorch().buffer  # the program reads from it: keep it alive while it runs
    method = Runtime.get().load_program(buffer).load_method("forward")
    return method.execute([x])[0].numpy().copy()


def test_decompose_silu_keeps_the_function_and_leaves_no_silu():
    model, x = act_model(nn.SiLU), calib_inputs()[:1]
    gm = torch.export.export(model, (x,)).module()
    assert decompose_silu(gm) == 1
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.silu.default not in targets and torch.ops.aten.sigmoid.default in targets
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=1e-6)  # fused silu vs sigmoid + mul rounding


@pytest.mark.parametrize("act,op", [(nn.SiLU, "sigmoid"), (nn.Hardswish, "hardswish")])
def test_int8_activation_is_annotated_and_runs_int8(act, op):
    model, x = act_model(act), calib_inputs()
    q = quantized(model, et.make_quantizer(model, "int8"), x)
    split = et.precision_split(torch.export.export(q, (x[:1],)))
    assert split["int8_ops"].get(op) == 1 and op not in split["float_ops"], split
    assert "silu" not in split["float_ops"] and "mul" not in split["float_ops"], split
    if op == "sigmoid":  # XNNPACK's fixed output grid: [0, 1) in 1/256 steps
        gate = next(n for n in q.graph.nodes if n.target == torch.ops.aten.sigmoid.default)
        out_q = next(iter(gate.users))
        assert QUANT in str(out_q.target) and out_q.args[1:3] == (1.0 / 256, -128), out_q.args


@pytest.mark.parametrize("act", [nn.SiLU, nn.Hardswish])
def test_int8_table_activation_lowers_fully_and_matches_the_simulation(act):
    model, x = act_model(act), calib_inputs()
    q = quantized(model, et.make_quantizer(model, "int8"), x)
    probe = x[:1]
    out = run_pte(torch.export.export(q, (probe,)), et.partitioner("xnnpack", None), probe)
    with torch.no_grad():
        sim, ref = q(probe).numpy(), model(probe).numpy()
    scale = np.abs(ref).max()
    assert np.abs(out - sim).max() < 0.02 * scale  # the .pte computes the simulated model (up to a few LSB)
    cos = float((out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref))
    assert cos > 0.999, cos


def test_int8_hardswish_table_equals_the_float_island_it_replaces():
    """Same input and output quantization, so the table gives what dequantize -> fp32 -> quantize gave."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    model, x = act_model(nn.Hardswish), calib_inputs()
    probe = x[:1]
    old = quantized(model, plain_quantizer(), x)
    new = quantized(model, et.make_quantizer(model, "int8"), x)
    out_old = run_pte(torch.export.export(old, (probe,)), XnnpackPartitioner(), probe)
    out_new = run_pte(torch.export.export(new, (probe,)), et.partitioner("xnnpack", None), probe)
    step = np.abs(out_old).max() / 127
    assert np.abs(out_new - out_old).max() <= 1.01 * step, (np.abs(out_new - out_old).max(), step)
