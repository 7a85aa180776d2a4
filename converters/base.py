"""The target contract and the one table of targets that feeds `convert`, the CLI choices and the help text.

A target module (executorch.py, coreml.py, tflite.py) defines a `Target` subclass and calls `register_target`.
The shared pipeline (pipeline.py) prepares the model (reparameterize, export-ready inputs), asks the target to
write its model file into the bundle's temp folder, runs parity where the runtime exists, and writes the bundle.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager, Iterator

import numpy as np
import torch

from edge_sdk.errors import UsageError, unknown


@dataclass(frozen=True)
class ConvertOptions:
    """Everything `edge-sdk convert` can ask of a target; each target says which values it supports."""

    precision: str = "fp32"
    backend: str | None = None  # None: the target's default backend
    nhwc: bool = False
    input_size: int | None = None
    calib_dir: Path | None = None
    calib_count: int = 32
    deployment_target: str | None = None  # Core ML: iOS16 | iOS17 | iOS18 (None: the target's default)
    labels: tuple[str, ...] | None = None  # class names when known (Core ML adds a classifier head with them)


@dataclass
class Artifact:
    """What a target wrote: the model file (relative to the bundle) and the manifest parts it owns.

    Parity is not the target's job: the pipeline writes the bundle to a temp folder, opens it with the runtime
    harness (`edge_sdk.runtime.load_bundle`) exactly as an app would, and compares with PyTorch — one parity check
    for every target, the same code `edge-sdk validate` runs later.
    `input_spec`/`output_spec` hold the target-specific keys (layout, dtype, quantization, names,
    normalization_in_model); the pipeline adds resize/crop/mean/std/color from the model's deploy config.
    """

    file: str
    backend: str
    input_spec: dict[str, Any]
    output_spec: dict[str, Any]
    report: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    # Set when this artifact cannot execute on this machine although the target usually can (e.g. an ExecuTorch
    # .pte delegated to Core ML): parity is then recorded as not_run with this reason.
    cannot_run_reason: str | None = None


class Target:
    """A conversion target. Subclasses fill in the class attributes and `export`."""

    name: ClassVar[str]
    suffix: ClassVar[str]
    description: ClassVar[str]
    backends: ClassVar[tuple[str, ...]]
    precisions: ClassVar[tuple[str, ...]]  # the first is the default
    supports_nhwc: ClassVar[bool] = False
    supports_calib: ClassVar[tuple[str, ...]] = ()  # precisions that use calibration images
    # Optional narrowing per backend, e.g. {"xnnpack": ("fp32", "int8", "mixed"), "coreml": ("fp32", "fp16")};
    # a backend missing here accepts every precision of the target.
    backend_precisions: ClassVar[dict[str, tuple[str, ...]]] = {}

    def available(self) -> tuple[bool, str]:
        """(True, "") when this machine can convert to the target, else (False, reason)."""
        return True, ""

    def can_run(self) -> tuple[bool, str]:
        """(True, "") when artifacts of this target can execute here (for parity), else (False, reason)."""
        return True, ""

    def default_precision(self) -> str:
        return self.precisions[0]

    def check_options(self, opts: ConvertOptions) -> None:
        """Reject combinations this target does not support, saying what it does support."""
        if opts.precision not in self.precisions:
            raise UsageError(f"--precision {opts.precision} is not supported by target {self.name}; "
                             f"supported: {', '.join(self.precisions)}")
        if opts.backend is not None and opts.backend not in self.backends:
            raise UsageError(f"--backend {opts.backend} is not supported by target {self.name}; "
                             f"supported: {', '.join(self.backends)}")
        backend = opts.backend or self.backends[0]
        allowed = self.backend_precisions.get(backend)
        if allowed is not None and opts.precision not in allowed:
            raise UsageError(f"--precision {opts.precision} is not supported by target {self.name} with backend "
                             f"{backend}; supported: {', '.join(allowed)}")
        if opts.nhwc and not self.supports_nhwc:
            raise UsageError(f"--nhwc is not supported by target {self.name} (only: "
                             f"{', '.join(t.name for t in TARGETS.values() if t.supports_nhwc)})")
        if opts.calib_dir is not None and opts.precision not in self.supports_calib:
            raise UsageError(f"--calib is only used by target {self.name} with --precision "
                             f"{' or '.join(self.supports_calib) or '(none)'}")

    def export(self, model: torch.nn.Module, example: torch.Tensor, opts: ConvertOptions, out_dir: Path,
               calib: Callable[[], list[torch.Tensor]]) -> Artifact:
        """Convert the reparameterized eval `model` and write the model file into `out_dir`.

        `example` is one normalized NCHW input; `calib()` returns normalized NCHW calibration batches (called only
        by precisions that calibrate).
        """
        raise NotImplementedError


TARGETS: dict[str, Target] = {}

# ---- progress: targets name their steps, the pipeline decides how to show them --------------------------------------

_STEP_HOOK: ContextVar[Callable[[str], ContextManager[Any]] | None] = ContextVar("edge_sdk_step_hook", default=None)


@contextlib.contextmanager
def step(description: str) -> Iterator[None]:
    """Wrap one named step of an export (e.g. `with step("lower to XNNPACK"):`).

    Targets call this around export / quantize / calibrate / lower / serialize so `edge-sdk convert` can show
    progress per step; outside the pipeline (tests, library use) it does nothing.
    """
    hook = _STEP_HOOK.get()
    if hook is None:
        yield
        return
    with hook(description):
        yield


@contextlib.contextmanager
def step_hook(hook: Callable[[str], ContextManager[Any]] | None) -> Iterator[None]:
    """Install `hook(description) -> context manager` for `step()` calls made inside this block (pipeline only)."""
    token = _STEP_HOOK.set(hook)
    try:
        yield
    finally:
        _STEP_HOOK.reset(token)


def register_target(target: Target) -> Target:
    TARGETS[target.name] = target
    return target


def load_targets() -> dict[str, Target]:
    """Import the target modules (each registers itself) and return the table, in a stable order."""
    from . import coreml, executorch, tflite  # noqa: F401
    return TARGETS


def get_target(name: str) -> Target:
    targets = load_targets()
    if name not in targets:
        raise unknown("target", name, list(targets) + ["all"])
    return targets[name]
