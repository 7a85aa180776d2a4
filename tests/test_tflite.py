"""TFLite target: every tiny family x every precision, loaded and run in ai-edge-litert, judged by the pipeline's parity.

Each family uses its trained weights (tests/trained.py) and the exact reference `edge-sdk convert` builds (same
parity images, random seed, calibration images and thresholds: converters/parity.py), so a green test here means
the CLI's parity line passes too. litert-torch conversion is the slow step (~15-20 s each on a shared 2-core
machine), so each family is converted to fp32 once (module-scoped fixture) and every reduced precision is derived
from those bytes with `quantize`, exactly as `export` does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edge_sdk import parity as P
from edge_sdk.converters import ConvertOptions
from edge_sdk.converters import parity as CP
from edge_sdk.converters import pipeline as PL
from edge_sdk.converters import tflite as T
from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.manifest import InputSpec
from edge_sdk.models import DeployConfig, reparameterize_model
from trained import TINY, trained_tiny

PRECISIONS = ("fp32", "fp16", "dynamic_int8", "int8")
# Measured (trained weights, pipeline calibration): the ops each family's int8 file keeps in float32, by op type.
# EXP / REDUCE_MAX: the quantizer has no int8 kernel (MobileViT softmax). DIV + ADD + BATCH_MATMUL: per head of the
# ReLU linear attention, the normalizer `den + eps` that int8 rounds to the DIV's zero point, the DIV, and its
# numerator `q @ kv` (converters/tflite.py, zero_risk_divisions: every DIV by a computed denominator stays float).
QUANTIZER_FLOAT = ("EXP", "REDUCE_MAX")
# Besides the DIVs, every op XNNPACK has no int8 kernel for stays float so the file is ONE XNNPACK partition
# (converters/tflite.py `_quantize_one_partition`): BATCH_MATMUL of two activations, SOFTMAX, HARD_SWISH, ...
INT8_FLOAT_OPS: dict[str, dict[str, int]] = {
    # levit_tiny / cctt_micro: small-grid attention runs all heads as one block-diagonal softmax + 2 bmm at deploy
    # (models/levit.py BLOCK_DIAG_MAX), hence fewer SOFTMAX / BATCH_MATMUL than one per head
    "levit_tiny": {"BATCH_MATMUL": 6, "HARD_SWISH": 9, "SOFTMAX": 3},
    "mobilevit_tiny": {"REDUCE_MAX": 2, "EXP": 2, "DIV": 2,  # softmax as EXP / sum: a computed denominator
                       "BATCH_MATMUL": 12, "MAXIMUM": 2, "SOFTMAX": 4, "SUB": 2},
    "mobilevitv2_tiny": {"EXP": 3, "DIV": 3,  # softmax normalizer avg_pool(e): a computed denominator
                         "AVERAGE_POOL_2D": 6, "SUB": 1},
    "pbhybrid_micro": {"DIV": 7, "ADD": 7, "BATCH_MATMUL": 14, "HARD_SWISH": 21},
    "cctt_micro": {"DIV": 2, "ADD": 2, "BATCH_MATMUL": 6, "HARD_SWISH": 19, "SOFTMAX": 1},
}


class Family:
    """A trained tiny model, the pipeline's parity reference for it and its fp32 .tflite bytes."""

    def __init__(self, name: str, nhwc: bool = False) -> None:
        torch.set_num_threads(1)
        self.name, self.nhwc = name, nhwc
        self.model = reparameterize_model(trained_tiny(name))  # what `convert` exports
        self.spec = InputSpec.from_deploy(self.model.deploy)
        self.size = self.model.deploy.input_size
        self.ref = CP.reference_for(self.model)  # exactly the pipeline's reference set
        self.fp32 = T.convert_fp32(self.model, self.model.example_inputs(1)[0], nhwc)
        self._built: dict[str, T.Quantized] = {"fp32": T.Quantized(self.fp32, None)}

    def calib(self):
        return PL.calib_loader(self.spec, ConvertOptions(precision="int8"))  # convert's generated calibration images

    def built(self, precision: str) -> T.Quantized:
        if precision not in self._built:
            self._built[precision] = T.quantize(self.fp32, precision, self.calib(), self.nhwc)
        return self._built[precision]

    def file(self, precision: str, tmp: Path) -> Path:
        path = tmp / f"{self.name}-{precision}-{'nhwc' if self.nhwc else 'nchw'}.tflite"
        if not path.exists():
            path.write_bytes(self.built(precision).data)
        return path

    def parity(self, precision: str, tmp: Path) -> dict[str, Any]:
        """edge_sdk/parity.py's metrics and verdict on the LiteRT outputs (images judged, random reported)."""
        path = self.file(precision, tmp)
        out_img = run_litert(path, torch.from_numpy(self.ref.image_inputs(self.spec)), self.nhwc, self.model.deploy)
        out_rnd = run_litert(path, torch.from_numpy(self.ref.random_inputs()), self.nhwc, self.model.deploy)
        images, random = P.compare(self.ref.image_logits, out_img), P.compare(self.ref.random_logits, out_rnd)
        return {"images": images, "random": random,
                "failures": P.verdict(precision, images, random, P.thresholds_for(precision))}


def run_litert(path: Path, x: torch.Tensor, nhwc: bool, deploy: DeployConfig) -> np.ndarray:
    """The runtime harness's Predictor on the file (layout, int8 (de)quantization), fed with the spec read back from
    the file exactly as `export` writes it into the manifest: what an app and the pipeline's parity run."""
    from edge_sdk.runtime.engines import open_tflite
    from edge_sdk.runtime.predictor import Predictor
    input_spec, output_spec = T.io_specs(path, nhwc, deploy)
    predictor = Predictor(open_tflite(path), input_spec, output_spec, None, "tflite")
    return predictor.run(x.numpy())


@pytest.fixture(scope="module", params=TINY)
def fam(request) -> Family:
    return Family(request.param)


@pytest.fixture(scope="module")
def nhwc() -> Family:
    return Family("levit_tiny", nhwc=True)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tflite")


def test_target_registered():
    from edge_sdk.converters.targets import get_target
    t = get_target("tflite")
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


@pytest.mark.parametrize("precision", PRECISIONS)
def test_parity_every_precision(fam, tmp, precision):
    """The project's parity bar (converters/parity.py thresholds) for this family at this precision."""
    par = fam.parity(precision, tmp)
    img = par["images"]
    assert par["failures"] == [], (fam.name, precision, par["failures"])
    assert img["nonfinite_output"] == 0 and par["random"]["nonfinite_output"] == 0
    if precision == "fp32":
        assert img["max_abs_ratio"] <= 1e-4 and par["random"]["max_abs_ratio"] <= 1e-4
        return
    assert img["cosine_mean"] >= P.thresholds_for(precision)["min_cosine"]
    assert img["decisive"] >= 1 and img["top1_agreement_decisive"] >= 0.98  # trained weights: top-1 is judged


def test_fp16_stores_half_weights(fam, tmp):
    from edge_sdk.converters.tflite_report import build_report
    rep = build_report(fam.file("fp16", tmp))
    assert rep["tensor_dtypes"].get("float16", 0) > 0 and rep["op_histogram"].get("DEQUANTIZE", 0) > 0
    # every fp16 weight is read through one DEQUANTIZE; the file shrinks less than 2x (tiny models: names and
    # metadata dominate; pbhybrid_micro 209 vs 232 KB)
    assert rep["tensor_dtypes"]["float16"] == rep["op_histogram"]["DEQUANTIZE"]
    assert fam.file("fp16", tmp).stat().st_size < 0.95 * len(fam.fp32)
    assert rep["float_ops"] is None  # float input: the full-integer question does not apply


def test_int8_io_and_what_stays_float(fam, tmp):
    """int8 input and output everywhere; inside, exactly the measured float islands, each explained in the report."""
    path = fam.file("int8", tmp)
    art = T.artifact(path, ConvertOptions(precision="int8"), fam.built("int8"), fam.model.deploy)
    inp, out, rep = art.input, art.output, art.report
    assert inp.dtype == "int8" and out.dtype == "int8"
    assert inp.quantization.scale > 0 and -128 <= inp.quantization.zero_point <= 127
    assert out.quantization.scale > 0
    assert rep["tensor_dtypes"]["int8"] > 50 and rep["int8_saturated_biases"] == []
    floats: dict[str, int] = {}
    for op in rep["float_ops"]:
        floats[op["op"]] = floats.get(op["op"], 0) + 1
    assert floats == INT8_FLOAT_OPS[fam.name]
    quant = rep["quantization"]
    assert quant["calibration"] == "min_max" and quant["full_integer"] == (not floats)
    kept = quant["kept_float"]  # what the converter chose (the rest of float_ops is the quantizer's)
    chosen: dict[str, int] = {}
    for k in kept:
        chosen[k["op"]] = chosen.get(k["op"], 0) + 1
    assert chosen == {op: n for op, n in floats.items() if op not in QUANTIZER_FLOAT}
    assert all(any(w in k["reason"] for w in ("zero point", "epsilon", "numerator", "XNNPACK")) for k in kept)
    from edge_sdk.profile import xnnpack_outside
    assert xnnpack_outside(path)[0] == 1  # one XNNPACK partition: no int8 island on TFLite's own kernels
    assert quant["recipe"] == "static_wi8_ai8" + (f" + {len(kept)} ops kept float" if kept else "")
    assert rep["gpu_compatible"] and rep["nnapi_compatible"]


def test_dynamic_int8_blocks_delegates(fam, tmp):
    """Hybrid kernels (float activations x int8 weights) run on the CPU only: the report must say so."""
    from edge_sdk.converters.tflite_report import build_report
    rep = build_report(fam.file("dynamic_int8", tmp))
    assert rep["tensor_dtypes"]["int8"] > 0
    assert not rep["gpu_compatible"] and not rep["nnapi_compatible"]
    ops = {b["op"] for b in rep["blocking_ops"]["gpu"]}
    assert "CONV_2D" in ops and all("dynamic-range" in b["reasons"][0] for b in rep["blocking_ops"]["gpu"])


def test_fp32_report(fam, tmp):
    from edge_sdk.converters.tflite_report import build_report
    rep = build_report(fam.file("fp32", tmp))
    hist = rep["op_histogram"]
    assert rep["ops"] == sum(hist.values()) and hist["CONV_2D"] > 0
    assert rep["transpose_count"] == hist.get("TRANSPOSE", 0) == len(rep["transposes"])
    assert rep["reshape_count"] == hist.get("RESHAPE", 0)
    # NCHW input: exactly one layout TRANSPOSE at the input (to the NHWC the kernels use), perm (0, 2, 3, 1)
    io = [t for t in rep["transposes"] if t["where"] == "io"]
    assert len(io) == 1 and io[0]["perm"] == [0, 2, 3, 1] and io[0]["in_shape"] == [1, 3, fam.size, fam.size]
    assert rep["internal_transpose_count"] == rep["transpose_count"] - 1
    assert sum(rep["transposes_by_module"].values()) == rep["internal_transpose_count"]
    assert rep["max_tensor_rank"] <= 4 and rep["gpu_compatible"] and rep["nnapi_compatible"]
    assert rep["nnapi_min_android_api"] >= 27 and rep["blocking_ops"] == {"gpu": [], "nnapi": []}


def test_transposes_point_at_real_modules(fam, tmp):
    """Each internal TRANSPOSE is attributed to a module path of the PyTorch model (for the model owners)."""
    from edge_sdk.converters.tflite_report import build_report
    for t in build_report(fam.file("fp32", tmp))["transposes"]:
        if t["where"] == "internal" and t["scope"] != "(model)":
            fam.model.get_submodule(t["scope"])  # raises AttributeError when the scope is not a module path


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


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_nhwc_parity(nhwc, tmp, precision):
    """NHWC file (Android camera layout): same parity bar, fed (1, H, W, 3); calibration permuted to NHWC too."""
    from edge_sdk.converters.tflite_report import build_report
    path = nhwc.file(precision, tmp)
    inp, _ = T.io_specs(path, True, nhwc.model.deploy)
    assert inp.layout == "NHWC" and inp.shape == (1, nhwc.size, nhwc.size, 3)
    assert inp.dtype == ("int8" if precision == "int8" else "float32")
    par = nhwc.parity(precision, tmp)
    assert par["failures"] == [], par["failures"]
    rep = build_report(path)
    assert not [t for t in rep["transposes"] if t["where"] == "io"]  # no input TRANSPOSE
    for scope in rep["transposes_by_module"]:  # module paths of the model, not of litert-torch's NHWC wrapper
        nhwc.model.get_submodule(scope)


class Small(torch.nn.Module):
    """Converts in a few seconds: export()'s plumbing does not need a zoo model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)
        self.deploy = DeployConfig(input_size=16)  # targets read the preprocessing from it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_export_writes_artifact(tmp_path):
    torch.manual_seed(0)
    model = Small().eval()
    calib = lambda: [torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))]
    art = T.TFLiteTarget().export(model, torch.randn(1, 3, 16, 16), ConvertOptions(precision="int8"), tmp_path,
                                  calib)
    assert art.file == "model.tflite" and art.backend == "litert"
    assert (tmp_path / art.file).read_bytes()[4:8] == b"TFL3"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temp files left behind
    assert art.input.dtype == "int8" and art.input.layout == "NCHW" and art.input.crop == 16
    assert art.input.normalization_in_model is False and art.output.kind == "logits"
    quant = art.report["quantization"]
    assert quant["recipe"] == "static_wi8_ai8" and quant["calibration"] == "min_max"
    assert quant["kept_float"] == [] and quant["full_integer"] and art.report["float_ops"] == []
    assert {"op_histogram", "transpose_count", "reshape_count", "gpu_compatible", "nnapi_compatible",
            "blocking_ops", "sources"} <= set(art.report)
    from edge_sdk.runtime.engines import open_tflite
    x = np.zeros(art.input.shape, np.int8)
    assert open_tflite(tmp_path / art.file)(x).shape == (1, 10)


def test_calibration_uses_global_min_max(nhwc):
    """Ranges cover every calibration image (the quantizer's default moving average follows the first ones)."""
    from ai_edge_litert.interpreter import Interpreter
    sig_name = T._input_name(nhwc.fp32)
    data = {T.SIGNATURE: T.calibration_set(nhwc.calib(), sig_name, True)}
    qsvs = T.calibrate_min_max(nhwc.fp32, T._recipe("int8"), data)
    x = np.concatenate([d[sig_name] for d in data[T.SIGNATURE]])
    tensor = Interpreter(model_content=nhwc.fp32).get_input_details()[0]["name"]
    assert len(data[T.SIGNATURE]) == ConvertOptions().calib_count
    assert np.isclose(float(np.min(qsvs[tensor]["min"])), x.min())
    assert np.isclose(float(np.max(qsvs[tensor]["max"])), x.max())


def test_empty_calibration_is_one_clear_error(nhwc):
    with pytest.raises(EdgeError, match="calibration set is empty"):
        T.quantize(nhwc.fp32, "int8", lambda: [], True)


def test_conversion_failure_is_one_clear_error():
    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x  # torch.export cannot trace a data-dependent branch

    with pytest.raises(EdgeError, match="litert-torch conversion failed"):
        T.convert_fp32(DataDependent(), torch.randn(1, 3, 8, 8), False)
