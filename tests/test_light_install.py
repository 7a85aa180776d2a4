"""The runtime side needs no torch: a .tflite bundle is predicted, validated and benchmarked with torch (and every
conversion toolchain) made unimportable, and a .pte then fails with one line saying what to install.

Each check runs in a fresh interpreter whose `sitecustomize` blocks the [convert] packages the way a light install
lacks them (ModuleNotFoundError), so bench's worker processes inherit the block too. `sys.modules` is printed at exit
to show not even an indirect import slipped through.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runtime_bundles as rb

# What `pip install edge-sdk` lacks (the [convert] extra); edge_sdk's own converter modules are installed but
# cannot import without torch.
HEAVY = ("torch", "torchvision", "executorch", "coremltools", "litert_torch", "ai_edge_quantizer", "tensorflow",
         "torchao", "matplotlib", "sklearn", "yaml")
BLOCKER = f'''
import importlib.abc, sys
BLOCKED = {HEAVY!r}

class _Light(importlib.abc.MetaPathFinder):
    """Behave like an install without the [convert] extra."""
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (light install)", name=name)
        return None

sys.meta_path.insert(0, _Light())
'''
REPORT = ("import atexit, sys\n"
          "atexit.register(lambda: print('LOADED=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('torch', 'executorch', 'coremltools', 'litert_torch', 'torchao') or "
          "m.startswith(('edge_sdk.converters', 'edge_sdk.models', 'edge_sdk.train')))), file=sys.stderr))\n")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return rb.build_bundles(rb.session_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def light_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("light-site")
    (site / "sitecustomize.py").write_text(BLOCKER + REPORT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("EDGE_SDK_DEBUG", None)
    return env


def _cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sdk.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


def _loaded(proc: subprocess.CompletedProcess) -> list[str]:
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOADED=")][-1]
    return [m for m in line[len("LOADED="):].split(",") if m]


def test_blocker_really_blocks(light_env):
    proc = subprocess.run([sys.executable, "-c", "import torch"], env=light_env, capture_output=True, text=True)
    assert proc.returncode == 1 and "light install" in proc.stderr


def test_predict_tflite_without_torch(bundles, light_env, tmp_path):
    pngs = rb.write_pngs(tmp_path, n=2)
    proc = _cli(light_env, "predict", bundles["tflite"], *pngs, "--top-k", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["target"] == "tflite" and len(out["predictions"]) == 2
    assert all(len(p["top_k"]) == 2 and p["top_k"][0]["label"] in rb.LABELS for p in out["predictions"])
    assert _loaded(proc) == []


def test_validate_tflite_without_torch(bundles, light_env):
    proc = _cli(light_env, "validate", bundles["tflite_nhwc"], "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["passed"] is True and report["parity"]["status"] == "passed"
    assert report["parity"]["images"]["max_abs_ratio"] <= 1e-4
    assert _loaded(proc) == []


def test_bench_tflite_without_torch(bundles, light_env, tmp_path):
    proc = _cli(light_env, "bench", bundles["tflite"], "--runs", "2", "--warmup", "0", "--quiet",
                "--json", tmp_path / "b.json")
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert r["target"] == "tflite" and "error" not in r and r["p50_ms"] > 0
    assert _loaded(proc) == []


def test_library_imports_without_torch(bundles, light_env):
    code = ("import numpy as np, edge_sdk.runtime, edge_sdk.validate, edge_sdk.parity, edge_sdk.bench\n"
            f"p = edge_sdk.runtime.load_bundle({str(bundles['tflite'])!r})\n"
            "x = p.preprocess([np.zeros((80, 90, 3), np.uint8)])\n"
            "print(p.run(x).shape, p.manifest.input.crop)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=light_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(1,", f"{rb.CLASSES})", "64"]
    assert _loaded(proc) == []


def test_pte_without_torch_is_one_line_saying_what_to_install(bundles, light_env, tmp_path):
    png = rb.write_pngs(tmp_path, n=1)[0]
    proc = _cli(light_env, "predict", bundles["executorch"], png)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("LOADED=")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert "needs torch" in lines[0] and "pip install 'edge-sdk[convert]'" in lines[0]


def test_convert_without_the_extra_says_what_to_install(light_env, tmp_path):
    proc = _cli(light_env, "convert", "levit_tiny", "--target", "tflite", "-o", tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("LOADED=")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "pip install 'edge-sdk[convert]'" in lines[0]


def test_top_level_help_imports_no_toolchain(light_env):
    proc = _cli(light_env, "--help")
    assert proc.returncode == 0 and "predict" in proc.stdout, proc.stderr
    assert _loaded(proc) == []


def test_runtime_modules_have_no_module_level_torch_import():
    """A static check next to the dynamic ones: no runtime-side module imports torch at module level."""
    import ast
    root = Path(__file__).resolve().parents[1] / "edge_sdk"
    runtime_side = ["manifest.py", "bundle.py", "errors.py", "preprocess.py", "parity.py", "validate.py", "bench.py",
                    "android.py", "output.py", "cli.py", "runtime/__init__.py", "runtime/loader.py",
                    "runtime/predictor.py", "runtime/engines.py", "runtime/realistic.py", "commands/predict.py",
                    "commands/validate.py", "commands/bench.py"]
    offenders = []
    for rel in runtime_side:
        tree = ast.parse((root / rel).read_text())
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{rel}: {n}" for n in names if n.split(".")[0] in ("torch", "executorch", "coremltools")
                          or n.startswith(("edge_sdk.converters", "edge_sdk.models"))]
    assert offenders == []
