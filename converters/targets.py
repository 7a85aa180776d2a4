"""The explicit list of conversion targets: the one place they are gathered (one line per target).

Why a list of module names instead of registration by import side effect: each target module is then a leaf (it
imports converters.base, nothing imports it back), the order of the table is written down here, and a target whose
toolchain is missing on this machine breaks only itself. Each module listed ends with `TARGET = SomeTarget()`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edge_sdk.errors import EdgeError, unknown

if TYPE_CHECKING:
    from .base import Target

TARGET_MODULES: tuple[str, ...] = (
    "edge_sdk.converters.executorch",
    "edge_sdk.converters.coreml",
    "edge_sdk.converters.tflite",
)


def load_targets() -> dict[str, Target]:
    """{name: Target} in TARGET_MODULES order (each module imported on first use)."""
    targets: dict[str, Target] = {}
    for module in TARGET_MODULES:
        try:
            target = importlib.import_module(module).TARGET
        except ImportError as exc:  # the light install has no torch: say how to get the converters
            raise EdgeError(f"cannot load target {module.rsplit('.', 1)[-1]} ({exc}); the converters need "
                            "pip install 'edge-sdk[convert]'") from exc
        if target.name in targets:
            raise ValueError(f"internal: target {target.name} is listed twice ({module})")
        targets[target.name] = target
    return targets


def get_target(name: str) -> Target:
    """The target called `name`; a UsageError with suggestions otherwise."""
    targets = load_targets()
    if name not in targets:
        raise unknown("target", name, list(targets) + ["all"])
    return targets[name]
