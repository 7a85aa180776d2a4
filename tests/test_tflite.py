"""TFLite target: every precision on two tiny families + NHWC, loaded and run in ai-edge-litert, compared with PyTorch.

litert-torch conversion is the slow step (~5-20 s each on a shared 2-core machine), so each family is converted to
fp32 once (module-scoped fixture) and the quantized files are derived from those bytes, exactly as `export` does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_sdk.converters import ConvertOptions
from edge_sdk.converters import tflite as T
from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.models import create_model

FAMILIES = ("levit_tiny", "cctt_micro")
N_EVAL = 8


def _calib(size: int):
    g = torch.Generator().manual_seed(1)
    return lambda: [torch.randn(4, 3, size, size, generator=g) for _ in range(2)]


class Converted:
    """A tiny model, its PyTorch logits on fixed inputs and its fp32 .tflite bytes (NCHW)."""

    def __init__(self, name: str, nhwc: bool = False) -> None:
        torch.manual_seed(0)
        torch.set_num_threads(1)
        self.model = create_model(name, num_classes=10).reparameterize().eval()
        self.size = self.model.deploy.input_size
        self.nhwc = nhwc
        self.x = torch.randn(N_EVAL, 3, self.size, self.size, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            self.ref = self.model(self.x).numpy()
        self.fp32 = T.convert_fp32(self.model, self.model.example_inputs(1)[0], nhwc)
        self._cache: dict[str, bytes] = {"fp32": self.fp32}

    def file(self, precision: str, tmp: Path) -> Path:
        if precision not in self._cache:
            self._cache[precision] = T.quantize(self.fp32, precision, _calib(self.size), self.nhwc)
        path = tmp / f"{precision}-{'nhwc' if self.nhwc else 'nchw'}.tflite"
        path.write_bytes(self._cache[precision])
        return path


def run_litert(path: Path, x: torch.Tensor, nhwc: bool) -> np.ndarray:
    """Feed normalized NCHW float inputs one by one the way an app would (layout, int8 quantization)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for xi in x.split(1):
        a = (T.to_nhwc(xi) if nhwc else xi).numpy()
        if inp["dtype"] == np.int8:
            scale, zp = inp["quantization"]
            a = np.clip(np.round(a / scale) + zp, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], a)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out["dtype"] == np.int8:
            scale, zp = out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        outs.append(y)
    return np.concatenate(outs)


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


@pytest.fixture(scope="module", params=FAMILIES)
def conv(request) -> Converted:
    return Converted(request.param)


@pytest.fixture(scope="module")
def nhwc() -> Converted:
    return Converted("levit_tiny", nhwc=True)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite")


def test_target_registered():
    from edge_sdk.converters.base import TARGETS
    t = TARGETS["tflite"]
    assert isinstance(t, T.TFLiteTarget)
    assert (t.suffix, t.backends, t.precisions) == (".tflite", ("litert",), ("fp32", "fp16", "dynamic_int8", "int8"))
    assert t.supports_nhwc and t.supports_calib == ("int8",) and t.default_precision() == "fp32"
    assert t.available() == (True, "") and t.can_run() == (True, "")


def test_rejects_unsupported_options(tmp):
    t = T.TFLiteTarget()
    with pytest.raises(UsageError, match="fp32, fp16, dynamic_int8, int8"):
        t.check_options(ConvertOptions(precision="mixed"))
    with pytest.raises(UsageError, match="--calib"):
        t.check_options(ConvertOptions(precision="fp16", calib_dir=tmp))


def test_fp32_matches_pytorch(conv, tmp):
    y = run_litert(conv.file("fp32", tmp), conv.x, False)
    assert y.shape == conv.ref.shape
    assert np.abs(y - conv.ref).max() <= 1e-4 * np.abs(conv.ref).max()


@pytest.mark.parametrize("precision,min_cos,min_top1", [("fp16", 0.999, 1.0), ("dynamic_int8", 0.99, 0.75),
                                                          ("int8", 0.98, 0.75)])
def test_reduced_precision_close_to_pytorch(conv, tmp, precision, min_cos, min_top1):
    y = run_litert(conv.file(precision, tmp), conv.x, False)
    assert cosine_min(y, conv.ref) >= min_cos
    assert (y.argmax(1) == conv.ref.argmax(1)).mean() >= min_top1


def test_fp16_stores_half_weights(conv, tmp):
    from edge_sdk.converters.tflite_report import build_report
    rep = build_report(conv.file("fp16", tmp))
    assert rep["tensor_dtypes"].get("float16", 0) > 0 and rep["op_histogram"].get("DEQUANTIZE", 0) > 0
    assert conv.file("fp16", tmp).stat().st_size < 0.9 * len(conv.fp32)  # tiny models: names and metadata dominate


def test_int8_is_full_integer_with_int8_io(conv, tmp):
    path = conv.file("int8", tmp)
    inp, out = T.io_specs(path, nhwc=False)
    assert inp["dtype"] == "int8" and out["dtype"] == "int8"
    assert inp["quantization"]["scale"] > 0 and -128 <= inp["quantization"]["zero_point"] <= 127
    assert out["quantization"]["scale"] > 0
    from edge_sdk.converters.tflite_report import build_report
    rep = build_report(path)
    assert "float32" not in rep["tensor_dtypes"] and rep["tensor_dtypes"]["int8"] > 10
    assert rep["gpu_compatible"] and rep["nnapi_compatible"]


def test_dynamic_int8_blocks_delegates(conv, tmp):
    """Hybrid kernels (float activations x int8 weights) run on the CPU only: the report must say so."""
    from edge_sdk.converters.tflite_report import build_report
    rep = build_report(conv.file("dynamic_int8", tmp))
    assert rep["tensor_dtypes"]["int8"] > 0
    assert not rep["gpu_compatible"] and not rep["nnapi_compatible"]
    ops = {b["op"] for b in rep["blocking_ops"]["gpu"]}
    assert "CONV_2D" in ops and all("dynamic-range" in b["reasons"][0] for b in rep["blocking_ops"]["gpu"])


def test_fp32_report(conv, tmp):
    from edge_sdk.converters.tflite_report import build_report
    rep = build_report(conv.file("fp32", tmp))
    hist = rep["op_histogram"]
    assert rep["ops"] == sum(hist.values()) and hist["CONV_2D"] > 0
    assert rep["transpose_count"] == hist.get("TRANSPOSE", 0) == len(rep["transposes"])
    assert rep["reshape_count"] == hist.get("RESHAPE", 0)
    # NCHW input: exactly one layout TRANSPOSE at the input (to the NHWC the kernels use), perm (0, 2, 3, 1)
    io = [t for t in rep["transposes"] if t["where"] == "io"]
    assert len(io) == 1 and io[0]["perm"] == [0, 2, 3, 1] and io[0]["in_shape"] == [1, 3, conv.size, conv.size]
    assert rep["internal_transpose_count"] == rep["transpose_count"] - 1
    assert sum(rep["transposes_by_module"].values()) == rep["internal_transpose_count"]
    assert rep["max_tensor_rank"] <= 4 and rep["gpu_compatible"] and rep["nnapi_compatible"]
    assert rep["nnapi_min_android_api"] >= 27 and rep["blocking_ops"] == {"gpu": [], "nnapi": []}


def test_transposes_point_at_real_modules(conv, tmp):
    """Each internal TRANSPOSE is attributed to a module path of the PyTorch model (for the model owners)."""
    from edge_sdk.converters.tflite_report import build_report
    for t in build_report(conv.file("fp32", tmp))["transposes"]:
        if t["where"] == "internal" and t["scope"] != "(model)":
            conv.model.get_submodule(t["scope"])  # raises AttributeError when the scope is not a module path


class FakeGraph:
    """Just enough of tflite_report._Graph to check the rule tables without converting anything."""

    def __init__(self, tensors: dict[int, tuple[list[int], type]], constants: set[int]) -> None:
        self.tensors = {i: {"shape": np.array(s), "dtype": d, "name": f"t{i}"} for i, (s, d) in tensors.items()}
        self.constants = constants

    def shape(self, i: int) -> list[int]:
        return [int(d) for d in self.tensors[i]["shape"]]


def test_rule_tables():
    from edge_sdk.converters import tflite_report as R
    g = FakeGraph({0: ([1, 2, 3, 4, 5], np.float32), 1: ([1, 2, 3, 4, 5], np.float32),
                   2: ([1, 8, 8, 16], np.float32), 3: ([1, 8, 8, 1], np.float32), 4: ([1, 1, 1, 16], np.float32),
                   5: ([16, 3, 3, 8], np.int8), 6: ([1, 8, 8, 16], np.int8)}, constants={5})
    op = lambda name, ins, outs: {"op_name": name, "inputs": np.array(ins), "outputs": np.array(outs), "index": 0}
    assert "rank-5" in R.gpu_problems(g, op("ADD", [0, 1], [1]))[0]
    assert "rank-5" in R.nnapi_problems(g, op("ADD", [0, 1], [1]))[0][0]
    assert "two-sided broadcast" in R.gpu_problems(g, op("MUL", [3, 4], [2]))[0]  # (1,8,8,1) x (1,1,1,16)
    assert R.gpu_problems(g, op("MUL", [2, 4], [2])) == R.gpu_problems(g, op("DIV", [2, 3], [2])) == []
    assert "not implemented" in R.gpu_problems(g, op("GELU_TANH_CUSTOM", [2], [2]))[0]
    assert "dynamic-range" in R.gpu_problems(g, op("CONV_2D", [2, 5], [2]))[0]
    assert R.nnapi_problems(g, op("BATCH_MATMUL", [2, 2], [2]), api=30)[0] == ["BATCH_MATMUL needs Android API 31"]
    assert R.nnapi_problems(g, op("CONV_2D", [6, 5], [6]))[1] == R.NNAPI_INT8_API  # signed int8 needs NNAPI 1.3
    assert R._scope("pkg.M/torch.nn.Sequential_body/pkg.Attn_m/pkg.ConvBN_q/torch.nn.Conv2d_conv;2") == "body.m.q.conv"
    assert R._scope("litert_torch.ChannelLastIOWrapper/pkg.M_wrapped/pkg.Attn_m;3") == "m"


def test_saturated_int8_bias_is_reported():
    """An int32 bias at the int32 limit (tiny calibrated input range) makes the int8 op wrong: the report lists it."""
    from edge_sdk.converters import tflite_report as R
    g = FakeGraph({0: ([1, 1, 1, 8], np.int8), 1: ([4, 1, 1, 8], np.int8), 2: ([4], np.int32),
                   3: ([1, 1, 1, 4], np.int8)}, constants={1, 2})
    biases = {2: np.array([-2**31, 5, 2**31 - 1, 0], np.int32)}
    g.const_value = biases.get
    g.ops = [{"op_name": "CONV_2D", "inputs": np.array([0, 1, 2]), "outputs": np.array([3]), "index": 7}]
    assert R.saturated_biases(g) == [{"index": 7, "op": "CONV_2D", "scope": "(model)", "saturated": 2, "of": 4}]
    biases[2] = np.array([1, 2, 3, 4], np.int32)
    assert R.saturated_biases(g) == []


def test_nhwc_fp32_and_int8(nhwc, tmp):
    from edge_sdk.converters.tflite_report import build_report
    path = nhwc.file("fp32", tmp)
    inp, _ = T.io_specs(path, nhwc=True)
    assert inp["layout"] == "NHWC" and inp["shape"] == [1, nhwc.size, nhwc.size, 3]
    y = run_litert(path, nhwc.x, True)
    assert np.abs(y - nhwc.ref).max() <= 1e-4 * np.abs(nhwc.ref).max()
    rep = build_report(path)
    assert not [t for t in rep["transposes"] if t["where"] == "io"]  # no input TRANSPOSE
    for scope in rep["transposes_by_module"]:  # module paths of the model, not of litert-torch's NHWC wrapper
        nhwc.model.get_submodule(scope)
    path8 = nhwc.file("int8", tmp)
    inp8, _ = T.io_specs(path8, nhwc=True)
    assert inp8["dtype"] == "int8" and inp8["shape"] == [1, nhwc.size, nhwc.size, 3]
    assert cosine_min(run_litert(path8, nhwc.x, True), nhwc.ref) >= 0.98


def test_export_writes_artifact(tmp_path):
    torch.manual_seed(0)
    model = create_model("levit_tiny", num_classes=10).reparameterize().eval()
    art = T.TFLiteTarget().export(model, model.example_inputs(1)[0], ConvertOptions(precision="int8"),
                                      tmp_path, _calib(64))
    assert art.file == "model.tflite" and art.backend == "litert"
    assert (tmp_path / art.file).read_bytes()[4:8] == b"TFL3"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temp files left behind
    assert art.input_spec["dtype"] == "int8" and art.input_spec["layout"] == "NCHW"
    assert art.input_spec["normalization_in_model"] is False and art.output_spec["kind"] == "logits"
    assert art.report["quantization"]["recipe"] == "static_wi8_ai8"
    assert {"op_histogram", "transpose_count", "reshape_count", "gpu_compatible", "nnapi_compatible",
            "blocking_ops", "sources"} <= set(art.report)
    from edge_sdk.runtime.engines import open_tflite
    x = np.zeros(art.input_spec["shape"], np.int8)
    assert open_tflite(tmp_path / art.file)(x).shape == (1, 10)


def test_empty_calibration_is_one_clear_error(conv):
    with pytest.raises(EdgeError, match="calibration set is empty"):
        T.quantize(conv.fp32, "int8", lambda: [], False)


def test_conversion_failure_is_one_clear_error():
    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x  # torch.export cannot trace a data-dependent branch

    with pytest.raises(EdgeError, match="litert-torch could not convert"):
        T.convert_fp32(DataDependent(), torch.randn(1, 3, 8, 8), False)
