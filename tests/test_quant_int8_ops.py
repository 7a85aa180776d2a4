"""SiLU, Hardswish and zero pads run int8 in an ExecuTorch int8 .pte (converters/quant_int8_ops.py).

Before, all three stayed fp32 between dequantize and quantize (XNNPACKQuantizer annotates none, and the partitioner
accepted them in fp32 only); the profile of mobilevitv2_050 int8 had its SiLUs at 47% of the run, and
EfficientNet-Lite0's TF "same" pads were 15% of its int8 run.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge_sdk.converters import executorch as et
from edge_sdk.converters.quant_int8_ops import decompose_silu
from model_helpers import plain_quantizer, quantized

QUANT = "quantize_per_tensor"


def act_model(act: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 32, 1), act(), nn.Conv2d(32, 8, 1)).eval()


def pad_model(pad: tuple[int, int, int, int] = (0, 1, 0, 1)) -> nn.Module:
    """conv -> ReLU6 -> zero pad -> stride-2 depthwise conv; the default is EfficientNet-Lite0's TF "same" pad."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU6(), nn.ZeroPad2d(pad),
                         nn.Conv2d(16, 16, 3, stride=2, groups=16), nn.Conv2d(16, 8, 1)).eval()


def models():
    return {"silu": act_model(nn.SiLU), "hardswish": act_model(nn.Hardswish), "pad": pad_model()}


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


@pytest.mark.parametrize("kind,op", [("silu", "sigmoid"), ("hardswish", "hardswish"), ("pad", "pad")])
def test_int8_op_is_annotated_and_runs_int8(kind, op):
    model, x = models()[kind], calib_inputs()
    q = quantized(model, et.make_quantizer(model, "int8"), x)
    split = et.precision_split(torch.export.export(q, (x[:1],)))
    assert split["int8_ops"].get(op) == 1 and op not in split["float_ops"], split
    assert "silu" not in split["float_ops"] and "mul" not in split["float_ops"], split
    if op == "sigmoid":  # XNNPACK's fixed output grid: [0, 1) in 1/256 steps
        gate = next(n for n in q.graph.nodes if n.target == torch.ops.aten.sigmoid.default)
        out_q = next(iter(gate.users))
        assert QUANT in str(out_q.target) and out_q.args[1:3] == (1.0 / 256, -128), out_q.args
    if op == "pad":  # the pad copies int8 values: same scale and zero point in and out
        pad = next(n for n in q.graph.nodes if n.target == torch.ops.aten.pad.default)
        dq_in, q_out = pad.args[0], next(iter(pad.users))
        assert QUANT in str(q_out.target) and q_out.args[1:3] == dq_in.args[1:3], (dq_in.args, q_out.args)


@pytest.mark.parametrize("kind", ["silu", "hardswish", "pad"])
def test_int8_op_lowers_fully_and_matches_the_simulation(kind):
    model, x = models()[kind], calib_inputs()
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


@pytest.mark.parametrize("kind", ["pad", "sigmoid"])
def test_mixed_op_between_two_grids_stays_fp32_and_the_pte_loads(kind):
    """`mixed` leaves a pad or a bare sigmoid unannotated between two differently quantized convs: XNNPACK's int8
    pad rejects two grids at load time (xnn_status_invalid_parameter) and its int8 sigmoid has a fixed output grid,
    so the partitioner keeps them fp32, and the manifest's split says so."""
    # a wide pad: 75% zeros move the histogram observer's range, so the grids before and after the pad differ
    model, x = (pad_model((6, 6, 6, 6)) if kind == "pad" else act_model(nn.Sigmoid)), calib_inputs()
    q = quantized(model, et.make_quantizer(model, "mixed"), x)
    if kind == "pad":
        pad = next(n for n in q.graph.nodes if n.target == torch.ops.aten.pad.default)
        assert pad.args[0].args[1:3] != next(iter(pad.users)).args[1:3]
    probe = x[:1]
    split = et.precision_split(torch.export.export(q, (probe,)))
    assert split["float_ops"].get(kind) == 1 and kind not in split["int8_ops"], split
    out = run_pte(torch.export.export(q, (probe,)), et.partitioner("xnnpack", None), probe)
    with torch.no_grad():
        sim = q(probe).numpy()
    assert np.abs(out - sim).max() < 0.02 * np.abs(sim).max()


@pytest.mark.parametrize("precision,deps", [("int8", 3), ("mixed", 1)])
def test_partitioner_takes_the_sigmoid_int8_only_on_its_grid(precision, deps):
    """int8: dequantize -> sigmoid -> quantize(1/256, -128) is one int8 sigmoid (3 nodes); mixed: fp32 (1 node)."""
    from executorch.exir import to_edge
    from edge_sdk.converters.quant_int8_ops import partitioner_configs
    model, x = act_model(nn.Sigmoid), calib_inputs()
    q = quantized(model, et.make_quantizer(model, precision), x)
    ep = to_edge(torch.export.export(q, (x[:1],))).exported_program()
    config = next(c for c in partitioner_configs() if c.target_name == "sigmoid.default")()
    node = next(n for n in ep.graph.nodes if n.op == "call_function" and "sigmoid" in str(n.target))
    assert len(config.get_node_and_deps(node, ep)) == deps
