"""What this machine can do: toolchain versions, which targets convert and which runtimes execute.

Checks import each part for real (a version string in metadata is not proof it loads) and, for runtimes, load a
tiny built-in model file where that is cheap. A required part that is missing makes `edge-sdk doctor` exit 1.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
from dataclasses import asdict, dataclass


@dataclass
class Check:
    name: str
    ok: bool
    version: str | None
    detail: str
    required: bool = True


PACKAGES = (  # (distribution, import name, required)
    ("torch", "torch", True),
    ("executorch", "executorch.exir", True),
    ("coremltools", "coremltools", True),
    ("litert-torch", "litert_torch", True),
    ("ai-edge-litert", "ai_edge_litert.interpreter", True),
    ("ai-edge-quantizer", "ai_edge_quantizer", False),
    ("opencv-python-headless", "cv2", True),
    ("numpy", "numpy", True),
)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_package(dist: str, module: str, required: bool) -> Check:
    version = _version(dist)
    try:
        importlib.import_module(module)
        return Check(dist, True, version, f"import {module}: ok", required)
    except Exception as exc:  # ImportError, or native load failures
        return Check(dist, False, version, f"import {module} failed: {str(exc).splitlines()[0][:160]}", required)


def toolchain_versions() -> dict[str, str | None]:
    """Versions recorded in every bundle manifest."""
    return {dist: _version(dist) for dist, _m, _r in PACKAGES} | {"edge-sdk": _version("edge-sdk"),
                                                                   "python": platform.python_version()}


def target_checks() -> list[Check]:
    """Per target: can it convert here, can its artifacts run here (for parity and benchmarks)."""
    from edge_sdk.converters import load_targets
    checks = []
    for name, target in load_targets().items():
        conv_ok, conv_why = target.available()
        run_ok, run_why = target.can_run()
        checks.append(Check(f"convert:{name}", conv_ok, None, conv_why or "converts here"))
        checks.append(Check(f"run:{name}", run_ok, None, run_why or "runs here", required=False))
    return checks


def run_checks() -> list[Check]:
    checks = [check_package(*p) for p in PACKAGES]
    if all(c.ok for c in checks if c.required):
        checks += target_checks()
    return checks


def report() -> dict:
    checks = run_checks()
    return {"platform": f"{platform.system()} {platform.machine()}", "python": platform.python_version(),
            "ok": all(c.ok for c in checks if c.required), "checks": [asdict(c) for c in checks]}
