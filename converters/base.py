"""The target contract: a `Target` owns every fact about its format, and `ConvertOptions` asks for one bundle.

Why the target owns its facts: the CLI's --target/--precision/--backend/--deployment-target choices, the help
table, the summary column of `edge-sdk convert` and the library defaults are all read from the Target class
attributes, so the library and the command line can never disagree (`ConvertOptions()` means "the target's
defaults", exactly what `edge-sdk convert MODEL --target X` builds). Target modules (executorch.py, coreml.py,
tflite.py) each end with `TARGET = XTarget()`; converters/targets.py lists them (one line per target). This module
imports no target and no torch, so it is a leaf of the import graph.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Iterator

from edge_sdk.errors import UsageError, did_you_mean
from edge_sdk.manifest import InputSpec, OutputSpec

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ConvertOptions:
    """Everything `edge-sdk convert` can ask of a target. None means "the target's default" (Target.resolve)."""

    precision: str | None = None  # None: Target.default_precision(backend)
    backend: str | None = None  # None: the target's first backend
    nhwc: bool = False
    input_size: int | None = None
    calib_dir: Path | None = None
    calib_count: int = 32
    deployment_target: str | None = None  # None: Target.default_deployment_target (where the backend uses one)
    labels: tuple[str, ...] | None = None  # class names when known (Core ML adds a classifier head with them)


@dataclass
class Artifact:
    """What a target wrote: the model file (relative to the bundle) and the manifest parts it owns.

    Parity is not the target's job: the pipeline writes the bundle to a temp folder, opens it with the runtime
    harness (`edge_sdk.runtime.load_bundle`) exactly as an app would, and compares with PyTorch — one parity check
    for every target, the same code `edge-sdk validate` runs later. `input` is built with
    `InputSpec.from_deploy(model.deploy, ...file facts...)`, so preprocessing comes from one place.
    """

    file: str
    backend: str
    input: InputSpec
    output: OutputSpec
    report: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    # Set when this artifact cannot execute on this machine although the target usually can (e.g. an ExecuTorch
    # .pte delegated to Core ML): parity is then recorded as not_run with this reason.
    cannot_run_reason: str | None = None


class Target:
    """A conversion target. Subclasses fill in the class attributes and `export` (and may override `summary`)."""

    name: ClassVar[str]
    suffix: ClassVar[str]  # the model file's suffix, shown in --help
    description: ClassVar[str]  # one line for --help
    backends: ClassVar[tuple[str, ...]]  # the first is the default
    precisions: ClassVar[tuple[str, ...]]  # the first is the default
    # Optional narrowing per backend, default first, e.g. {"xnnpack": ("fp32", "int8"), "coreml": ("fp32", "fp16")};
    # a backend missing here accepts every precision of the target.
    backend_precisions: ClassVar[dict[str, tuple[str, ...]]] = {}
    deployment_targets: ClassVar[tuple[str, ...]] = ()  # minimum OS versions (Core ML); empty: not applicable
    default_deployment_target: ClassVar[str | None] = None
    deployment_backends: ClassVar[tuple[str, ...]] = ()  # backends that use a deployment target (empty: all)
    supports_nhwc: ClassVar[bool] = False
    supports_calib: ClassVar[tuple[str, ...]] = ()  # precisions that use calibration images

    def available(self) -> tuple[bool, str]:
        """(True, "") when this machine can convert to the target, else (False, reason)."""
        return True, ""

    def can_run(self) -> tuple[bool, str]:
        """(True, "") when artifacts of this target can execute here (for parity), else (False, reason)."""
        return True, ""

    def precisions_for(self, backend: str | None = None) -> tuple[str, ...]:
        """The precisions of a backend (default first); the target's when the backend does not narrow them."""
        return self.backend_precisions.get(backend or self.backends[0], self.precisions)

    def default_precision(self, backend: str | None = None) -> str:
        return self.precisions_for(backend)[0]

    def uses_deployment_target(self, backend: str | None = None) -> bool:
        backend = backend or self.backends[0]
        return bool(self.deployment_targets) and (not self.deployment_backends or backend in self.deployment_backends)

    def with_defaults(self, opts: ConvertOptions) -> ConvertOptions:
        """Fill every None option with this target's default: the one place a default is decided."""
        backend = opts.backend or self.backends[0]
        deployment = opts.deployment_target
        if deployment is None and self.uses_deployment_target(backend):
            deployment = self.default_deployment_target
        return replace(opts, backend=backend, precision=opts.precision or self.default_precision(backend),
                       deployment_target=deployment)

    def resolve(self, opts: ConvertOptions) -> ConvertOptions:
        """Defaults filled in, then checked: what `convert` and `export` work with."""
        opts = self.with_defaults(opts)
        self.check_options(opts)
        return opts

    def check_options(self, opts: ConvertOptions) -> None:
        """Reject combinations this target does not support, saying what it does support."""
        opts = self.with_defaults(opts)
        if opts.backend not in self.backends:
            raise UsageError(f"--backend {opts.backend} is not supported by target {self.name}; "
                             f"supported: {', '.join(self.backends)}{did_you_mean(opts.backend, self.backends)}")
        if opts.precision not in self.precisions:
            raise UsageError(f"--precision {opts.precision} is not supported by target {self.name}; "
                             f"supported: {', '.join(self.precisions)}")
        allowed = self.precisions_for(opts.backend)
        if opts.precision not in allowed:
            raise UsageError(f"--precision {opts.precision} is not supported by target {self.name} with backend "
                             f"{opts.backend}; supported: {', '.join(allowed)}")
        self._check_deployment_target(opts)
        if opts.nhwc and not self.supports_nhwc:
            raise UsageError(f"--nhwc is not supported by target {self.name}")
        if opts.calib_dir is not None and opts.precision not in self.supports_calib:
            raise UsageError(f"--calib is only used by target {self.name} with --precision "
                             f"{' or '.join(self.supports_calib) or '(none)'}")

    def _check_deployment_target(self, opts: ConvertOptions) -> None:
        if opts.deployment_target is None:
            return
        if not self.uses_deployment_target(opts.backend):
            where = f" with backend {opts.backend}" if self.deployment_targets else ""
            raise UsageError(f"--deployment-target is not used by target {self.name}{where}")
        if opts.deployment_target not in self.deployment_targets:
            raise UsageError(f"--deployment-target {opts.deployment_target} is not supported by target {self.name}; "
                             f"supported: {', '.join(self.deployment_targets)} "
                             f"(default {self.default_deployment_target})"
                             f"{did_you_mean(opts.deployment_target, self.deployment_targets)}")

    def summary(self, report: dict[str, Any]) -> str:
        """One short cell for the `edge-sdk convert` table (delegation, compatibility, ...)."""
        return ""

    def export(self, model: torch.nn.Module, example: torch.Tensor, opts: ConvertOptions, out_dir: Path,
               calib: Callable[[], list[torch.Tensor]]) -> Artifact:
        """Convert the reparameterized eval `model` and write the model file into `out_dir`.

        `opts` is resolved (no None defaults left). `example` is one normalized NCHW input; `calib()` returns
        normalized NCHW calibration batches (called only by precisions that calibrate).
        """
        raise NotImplementedError


def deploy_of(model: Any, example: Any) -> Any:
    """The model's DeployConfig; a plain nn.Module without one is taken to want [0, 1] pixels at the example's size
    (mean 0, std 1, no resize margin), so targets can still describe its input."""
    deploy = getattr(model, "deploy", None)
    if deploy is not None:
        return deploy
    side = int(example.shape[-1])
    return {"input_size": side, "resize": side, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


# ---- progress: targets name their steps, the pipeline decides how to show them --------------------------------------

_STEP_HOOK: ContextVar[Callable[[str], ContextManager[Any]] | None] = ContextVar("edge_sdk_step_hook", default=None)

# The one stage vocabulary of progress lines, for every target: "<stage>: <detail>" (e.g. "lower: XNNPACK").
STAGES = ("export", "quantize", "calibrate", "lower", "serialize", "report", "parity")


@contextlib.contextmanager
def step(stage: str, detail: str = "") -> Iterator[None]:
    """Wrap one stage of an export (e.g. `with step("lower", "XNNPACK"):`).

    Targets call this around export / quantize / calibrate / lower / serialize / report so `edge-sdk convert`
    shows the same progress lines for every target; outside the pipeline (tests, library use) it does nothing.
    """
    if stage not in STAGES:
        raise ValueError(f"internal: unknown progress stage {stage!r}; use one of {', '.join(STAGES)}")
    hook = _STEP_HOOK.get()
    if hook is None:
        yield
        return
    with hook(f"{stage}: {detail}" if detail else stage):
        yield


@contextlib.contextmanager
def step_hook(hook: Callable[[str], ContextManager[Any]] | None) -> Iterator[None]:
    """Install `hook(description) -> context manager` for `step()` calls made inside this block (pipeline only)."""
    token = _STEP_HOOK.set(hook)
    try:
        yield
    finally:
        _STEP_HOOK.reset(token)
