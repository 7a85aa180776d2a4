"""`edge-sdk profile`: per-op times on tiny bundles add up, every op maps to a real module of the model, block types
and op classes are named, the GEMM peak is measured and cached, .tflite says honestly what it cannot time.

No timing assertions (the machine is shared): only that the numbers exist, are consistent and sum correctly.
Each profile runs the installed CLI in a fresh process (ExecuTorch's thread pool is sized once per process).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runtime_bundles as rb
from edge_sdk.profile import align, block_type, kernel_class, node_macs, stage_of


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    return rb.build_bundles(rb.session_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("edge-sdk-cache")


@pytest.fixture(scope="module")
def mobilevit_pte(tmp_path_factory) -> Path:
    """A second family (MV2 blocks, patch regrouping, softmax attention), converted by the real pipeline."""
    import torch
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    from edge_sdk.models import create_model
    from edge_sdk.runtime.realistic import fill_realistic_weights
    torch.manual_seed(0)
    model = fill_realistic_weights(create_model("mobilevit_tiny", num_classes=10), seed=0)
    model.name = "mobilevit_tiny"
    res = convert(model, "executorch", ConvertOptions(), tmp_path_factory.mktemp("mvit"), show_progress=False)
    return res[0].bundle


def _profile(bundle: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGE_SDK_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "edge_sdk.cli", "profile", str(bundle), *args], capture_output=True,
                          text=True, env=env, timeout=900)


def _json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _check_sums(p: dict) -> None:
    total = max(p["execute_ms"], p["kernel_ms"])
    assert total > 0
    assert sum(o["ms"] for o in p["ops"]) == pytest.approx(p["kernel_ms"], rel=1e-6)
    assert p["kernel_ms"] + p["overhead_ms"] == pytest.approx(total, rel=1e-6)
    for key in ("by_op_class", "by_block", "by_stage"):
        rows = p[key]
        assert sum(r["share"] for r in rows) == pytest.approx(100.0, abs=1e-6), key
        assert sum(r["ms"] for r in rows) == pytest.approx(total, rel=1e-6), key
        assert sum(r["ops"] for r in rows) == len(p["ops"]), key


def _check_modules(p: dict, name: str) -> None:
    from edge_sdk.models import create_model
    model = create_model(name, num_classes=10)
    modules = dict(model.named_modules())
    delegated = [o for o in p["ops"] if o["delegated"]]
    assert delegated, "no XNNPACK kernel events"
    for o in p["ops"]:
        if o["module"]:
            assert o["module"] in modules, o  # a real module path of the model
    matched = [o for o in delegated if not o["inferred_module"]]
    assert len(matched) >= 0.9 * len(delegated)
    # a matched conv/GEMM kernel came from a Conv2d/Linear and carries its MACs
    for o in matched:
        if o["op_class"] in ("conv", "gemm (1x1 conv / linear)", "depthwise conv"):
            assert o["op"] in ("convolution", "linear", "addmm", "mm"), o
            assert o["macs"] > 0
    assert sum(o["macs"] for o in p["ops"]) == pytest.approx(p["model_macs"], rel=0.02)


def test_pte_profile_levit(bundles, cache):
    p = _json(_profile(bundles["executorch"], cache, "--json", "--runs", "5", "--warmup", "1", "--top", "7"))
    assert (p["model"], p["runtime"], p["precision"], p["threads"], p["runs"]) == (
        "levit_tiny", "executorch-xnnpack", "fp32", 1, 5)
    _check_sums(p)
    _check_modules(p, "levit_tiny")
    assert {"attention", "FFN", "stem", "head"} <= {r["name"] for r in p["by_block"]}
    assert {"conv", "gemm (1x1 conv / linear)", "bmm (attention matmul)", "softmax"} <= {
        r["name"] for r in p["by_op_class"]}
    attn = [o for o in p["ops"] if o["block"] == "attention" and o["op"] == "_softmax"]
    assert attn and all(".stage" in o["module"] for o in attn)
    top = p["top"]
    assert len(top) == 7 and [o["ms"] for o in top] == sorted((o["ms"] for o in p["ops"]), reverse=True)[:7]
    # the GEMM peak was measured (and cached for this machine): % of peak is consistent with GMAC/s
    assert p["peak_gmacs_per_s"] > 0.1
    for r in p["by_op_class"]:
        if r["gmacs_per_s"]:
            assert r["pct_of_peak"] == pytest.approx(100 * r["gmacs_per_s"] / p["peak_gmacs_per_s"])
    table = json.loads((cache / "gemm_peak.json").read_text())
    assert [v["gmacs_per_s"] for v in table.values()] == [pytest.approx(p["peak_gmacs_per_s"])]
    assert len(list((cache / "profile-maps").glob("*.json"))) == 1


def test_pte_profile_mobilevit_table(mobilevit_pte, cache):
    proc = _profile(mobilevit_pte, cache, "--runs", "3", "--warmup", "1", "--top", "5", "--no-peak")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for title in ("top 5 ops", "by block type", "by stage", "by op class"):
        assert title in out
    for block in ("MV2", "attention", "patch regroup", "stem"):
        assert block in out
    p = _json(_profile(mobilevit_pte, cache, "--runs", "3", "--warmup", "1", "--no-peak", "--json"))
    _check_sums(p)
    _check_modules(p, "mobilevit_tiny")
    assert p["peak_gmacs_per_s"] is None
    regroup = [o for o in p["ops"] if o["block"] == "patch regroup"]
    assert regroup and all(o["op_class"] == "data movement" for o in regroup if not o["inferred_module"])


def test_tflite_profile_is_honest(bundles, cache):
    p = _json(_profile(bundles["tflite"], cache, "--json", "--runs", "3", "--warmup", "1"))
    assert p["per_op_timing"] is None and "benchmark_model" in p["not_available"]
    assert "--enable_op_profiling" in p["not_available"]
    assert p["median_ms"] > 0 and p["runtime"] == "litert"
    x = p["xnnpack"]
    assert x["partitions"] >= 1 and 0 <= x["ops_outside"] <= x["ops"]
    assert sum(x["outside_by_op"].values()) == x["ops_outside"]
    assert sum(o["count"] for o in p["ops"]) == x["ops"]
    assert sum(o["macs"] for o in p["ops"]) == pytest.approx(p["model_macs"], rel=0.05)


def test_profile_errors_are_one_line(tmp_path, cache):
    proc = _profile(tmp_path / "missing", cache)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: bundle not found")
    assert "Traceback" not in proc.stderr


# ---- the pieces, on synthetic input -----------------------------------------------------------------------------

def test_align_skips_fused_nodes_and_inserted_kernels():
    nodes = [{"op": op} for op in ("convolution", "relu", "convolution", "view_copy", "bmm", "_softmax", "add")]
    events = ["Transpose (ND, X32) #1", "Convolution (NHWC, F32) IGEMM #1", "Fully Connected (NC, F32) GEMM #1",
              "Batch Matrix Multiply (NC, F32) GEMM #1", "Softmax (NC, F32) #1", "Add (ND) #1"]
    # relu fused into the first conv, the reshape elided, a layout transpose inserted first
    assert align(events, nodes) == [None, 0, 2, 4, 5, 6]


def test_block_types_and_stages():
    assert block_type([("layer3", "torch.nn.Sequential"), ("layer3.1", "models.mobilevit.MobileViTBlock"),
                       ("layer3.1.mixer", "models.mobilevit.PatchMixer"),
                       ("layer3.1.mixer.grid", "models.layers.PatchGrid")]) == "patch regroup"
    assert block_type([("body.stage0.0", "models.layers.Residual"),
                       ("body.stage0.0.m", "models.levit.LeViTAttention")]) == "attention"
    assert block_type([("body.stage0.1", "models.layers.Residual"), ("body.stage0.1.m.0", "models.layers.ConvBN")]) \
        == "FFN"
    assert block_type([("stem", "torch.nn.Sequential"), ("stem.0", "models.layers.ConvBN")]) == "stem"
    assert block_type([("layer1.0", "models.layers.InvertedResidual")]) == "MV2"
    assert block_type([("head", "models.layers.ClassifierHead")]) == "head"
    mixer = [("layer3.1", "models.mobilevit.MobileViTBlock"), ("layer3.1.mixer", "models.mobilevit.PatchMixer")]
    assert block_type(mixer, "slice_copy") == "patch regroup"  # PatchGrid methods: no module call of their own
    assert block_type(mixer + [("layer3.1.mixer.conv_in", "torch.nn.Conv2d")], "convolution") \
        == "transformer in/out proj"
    assert block_type([]) == "graph I/O"
    assert stage_of("body.stage1.0.q.conv") == "body.stage1" and stage_of("layer3.1.mixer") == "layer3"
    assert kernel_class("Convolution (NHWC, F32) DWConv #2") == "depthwise conv"
    assert kernel_class("Fully Connected (NC, F32) GEMM #1") == "gemm (1x1 conv / linear)"
    assert kernel_class("Mean (ND) Reduce2 #1") == "pool / reduce"


def test_node_macs():
    assert node_macs("convolution", (1, 8, 4, 4), [(1, 4, 8, 8), (8, 4, 3, 3)]) == 8 * 16 * 4 * 9
    assert node_macs("convolution", (1, 8, 4, 4), [(1, 8, 4, 4), (8, 1, 3, 3)]) == 8 * 16 * 9  # depthwise
    assert node_macs("bmm", (2, 16, 32), [(2, 16, 8), (2, 8, 32)]) == 2 * 16 * 32 * 8
    assert node_macs("linear", (1, 10), [(1, 64), (10, 64)]) == 640
    assert node_macs("add", (1, 10), [(1, 10), (1, 10)]) == 0
