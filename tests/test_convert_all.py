"""The user's path, through the installed executable: a trained checkpoint -> `--target all` -> `validate` each.

Runs `edge-sdk` as a subprocess (as a user would), so it also checks what the terminal shows: one progress line
per step, and none of the toolchains' import warnings or progress bars (coremltools, torchao, TensorFlow).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from trained import trained_path

pytestmark = pytest.mark.slow
EXE = str(Path(sys.executable).with_name("edge-sdk"))
NOISE = ("Failed to load", "has not been tested with coremltools", "FutureWarning", "oneDNN", "it/s]",
         "Running MIL", "Converting PyTorch Frontend", "Traceback")


def edge_sdk(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGE_SDK_DEBUG"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("all")
    return out, edge_sdk("convert", str(trained_path("levit_tiny")), "--target", "all", "-o", str(out))


def test_every_target_written_with_progress_and_no_toolchain_noise(converted):
    out, proc = converted
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["levit_tiny-coreml-coreml-fp16", "levit_tiny-executorch-xnnpack-fp32",
                                                     "levit_tiny-tflite-litert-fp32"]
    steps = re.findall(r"✓ (.+?) \(\d+\.\d s\)", proc.stderr)
    # one stage vocabulary across targets (converters.base.STAGES): "stage: detail"
    for expected in ("load model", "export: torch.export", "lower: xnnpack", "serialize: model.pte",
                     "export: litert-torch (fp32 .tflite)", "serialize: model.tflite", "report: delegate compatibility",
                     "lower: Core ML MIL (fp16, iOS17)", "report: Neural Engine readiness"):
        assert any(s.startswith(expected) for s in steps), (expected, steps)
    assert steps.count("parity: runtime vs PyTorch") == 3
    noisy = [ln for ln in proc.stderr.splitlines() if any(n in ln for n in NOISE)]
    assert not noisy, noisy


@pytest.mark.parametrize("target", ["executorch-xnnpack-fp32", "tflite-litert-fp32", "coreml-coreml-fp16"])
def test_validate_each_bundle(converted, target):
    out, _ = converted
    proc = edge_sdk("validate", str(out / f"levit_tiny-{target}"), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    parity = report["parity"]
    if target.startswith("coreml"):
        assert parity["status"] == "not_run" and "macOS" in parity["reason"]
    else:
        assert parity["status"] == "passed", parity
        assert parity["images"]["decisive"] >= 4  # trained weights: the top-1 check is meaningful
        assert parity["images"]["top1_agreement_decisive"] == 1.0
