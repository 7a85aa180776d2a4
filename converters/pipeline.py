"""The conversion pipeline shared by every target: model -> temp bundle -> parity -> atomic swap.

Steps (each a short function): resolve the model (zoo name or edge-sdk checkpoint) -> reparameterize -> example
input and calibration batches -> `Target.export` into the bundle's temp folder -> manifest + labels.txt +
reference.npz -> parity on the temp bundle, opened with `edge_sdk.runtime.load_bundle` exactly as an app would ->
rename into place. A failure at any step leaves no bundle and never touches an existing one.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from edge_sdk import doctor
from edge_sdk import parity as parity_mod
from edge_sdk.errors import EdgeError, UsageError, toolchain_errors
from edge_sdk.manifest import InputSpec, Manifest, ModelInfo

from .base import Artifact, ConvertOptions, Target, step, step_hook
from .parity import PARITY_IMAGES, PARITY_RANDOM, PARITY_SEED, parity_images, reference_for  # noqa: F401
from .sources import Source
from .targets import get_target, load_targets

CALIB_BATCH = 8


@dataclass
class ConvertResult:
    """One bundle written by `convert` (what the CLI summary table and --json show)."""

    bundle: Path
    target: str
    backend: str
    precision: str
    file: str
    size_bytes: int
    report: dict[str, Any]
    parity: dict[str, Any]
    seconds: float = 0.0
    summary: str = ""  # the target's one-cell summary of `report` (Target.summary)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "target": self.target, "backend": self.backend,
                "precision": self.precision, "file": self.file, "size_bytes": self.size_bytes,
                "report": self.report, "parity": self.parity, "seconds": round(self.seconds, 2),
                "summary": self.summary}


def bundle_name(model_name: str, target: str, backend: str, precision: str, nhwc: bool = False) -> str:
    """e.g. 'mobilevitv2_050-executorch-xnnpack-fp32', 'levit_128s-tflite-litert-int8-nhwc'."""
    return "-".join([model_name, target, backend, precision] + (["nhwc"] if nhwc else []))


# ---- resolve the model -------------------------------------------------------------------------------------------

def resolve_model(model: str | Path | nn.Module, checkpoint: Path | None = None, num_classes: int | None = None,
                  input_size: int | None = None, pretrained: bool | str = False) -> Source:
    """Zoo name (+ optional --checkpoint), an edge-sdk checkpoint file, a .pt2, `file.py:factory`, or a ready
    nn.Module: one resolver for every source (converters/sources.py)."""
    from .sources import SourceOptions, resolve_source
    return resolve_source(model, SourceOptions(checkpoint=checkpoint, num_classes=num_classes, input_size=input_size,
                                               pretrained=pretrained or None))


def resolve_labels(model: nn.Module, labels: Sequence[str] | None) -> list[str]:
    """--labels FILE, else the model's deploy labels, else generic class_0..class_{C-1}."""
    n = int(getattr(model, "num_classes", 0) or 0)
    if labels is not None:
        labels = [str(x) for x in labels]
        if n and len(labels) != n:
            raise UsageError(f"{len(labels)} labels given for a model with {n} classes")
        return labels
    deploy = getattr(getattr(model, "deploy", None), "labels", None)
    return list(deploy) if deploy else [f"class_{i}" for i in range(n)]


def read_labels(path: Path) -> list[str]:
    """One label per non-empty line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read labels file {path}: {exc}") from None
    labels = [ln.strip() for ln in lines if ln.strip()]
    if not labels:
        raise UsageError(f"labels file {path} is empty")
    return labels


# ---- inputs --------------------------------------------------------------------------------------------------------

def calibration_images(spec: InputSpec, calib_dir: Path | None, count: int) -> list[np.ndarray]:
    """Decoded BGR images for calibration: the user's folder, else generated scenes (seed differs from parity)."""
    from edge_sdk.preprocess import read_image
    if calib_dir is None:
        return parity_images(count, spec.resize, seed=7)
    files = check_calib_dir(calib_dir)
    step_n = max(1, len(files) // count)
    return [read_image(p) for p in files[::step_n][:count]]


def check_calib_dir(calib_dir: Path, count: int | None = None) -> list[Path]:
    """The folder's image files; with `count`, the ones calibration will use are decoded now, so an undecodable
    file stops the conversion before the export instead of after it (issue 14)."""
    from edge_sdk.preprocess import list_images, read_image
    if not Path(calib_dir).is_dir():
        raise UsageError(f"calibration folder not found: {calib_dir}")
    files = list_images(calib_dir)
    if not files:
        raise UsageError(f"calibration folder {calib_dir} holds no images (.jpg, .png, ...)")
    if count:
        bad = []
        for p in files[::max(1, len(files) // count)][:count]:
            try:
                read_image(p)
            except EdgeError as exc:
                bad.append(str(exc))
        if bad:
            raise UsageError(f"calibration folder {calib_dir}: {len(bad)} of the images calibration uses cannot be "
                             f"read ({bad[0]}{'; ...' if len(bad) > 1 else ''}); remove or replace them")
    return files


def calib_loader(spec: InputSpec, opts: ConvertOptions) -> Callable[[], list[torch.Tensor]]:
    """A lazy `calib()` for Target.export: normalized NCHW batches, built only when a precision calibrates, and
    built once (the depthwise rounding and the quantizer's calibration both read them)."""
    @functools.cache
    def calib() -> list[torch.Tensor]:
        from edge_sdk.preprocess import preprocess_batch
        images = calibration_images(spec, opts.calib_dir, opts.calib_count)
        x = torch.from_numpy(preprocess_batch(images, spec))  # (N, 3, H, W)
        return list(x.split(CALIB_BATCH))
    return calib


# ---- manifest -------------------------------------------------------------------------------------------------------

def model_section(src: Source, example: torch.Tensor) -> ModelInfo:
    from edge_sdk.bundle import sha256_file
    from edge_sdk.models import count_macs, count_params
    m = src.model
    return ModelInfo(name=src.name, family=getattr(m, "family", None), num_classes=getattr(m, "num_classes", None),
                     config=m.config_dict() if hasattr(m, "config_dict") else {},
                     deploy=m.deploy.to_dict() if hasattr(m, "deploy") else None,
                     params=count_params(m), macs=count_macs(m, (example,)),
                     checkpoint_sha256=sha256_file(src.checkpoint) if src.checkpoint else None)


def build_manifest(target: Target, opts: ConvertOptions, art: Artifact, example: torch.Tensor,
                   model_info: ModelInfo, labels: str | None) -> Manifest:
    """The manifest of a new bundle (sha256 and creation time are stamped by bundle.finish_manifest)."""
    calibrates = opts.precision in target.supports_calib
    conversion = {"input_size": int(example.shape[-1]), "nhwc": opts.nhwc,
                  "calibration": (str(opts.calib_dir) if opts.calib_dir else "generated") if calibrates else None,
                  "calib_count": opts.calib_count if calibrates else None,
                  "deployment_target": opts.deployment_target}
    return Manifest(model=model_info, target=target.name, backend=art.backend, precision=str(opts.precision),
                    file=art.file, input=art.input, output=art.output, labels=labels,
                    toolchain=doctor.toolchain_versions(), report=art.report,
                    parity=parity_mod.not_run("parity not run yet"), reference=parity_mod.REFERENCE_FILE,
                    conversion=conversion, extra=dict(art.extra))


# ---- one target -----------------------------------------------------------------------------------------------------

def run_parity(folder: Path, target: Target, art: Artifact, precision: str) -> dict[str, Any]:
    """Parity on a (temp) bundle through the runtime harness; not_run where its runtime is missing here."""
    if art.cannot_run_reason:
        return parity_mod.not_run(art.cannot_run_reason)
    ok, why = target.can_run()
    if not ok:
        return parity_mod.not_run(why)
    from edge_sdk.runtime import load_bundle
    reference = parity_mod.ReferenceSet.load(folder / parity_mod.REFERENCE_FILE)
    return parity_mod.check(load_bundle(folder), reference, precision)


def _fill(src: Source, target: Target, opts: ConvertOptions, example: torch.Tensor, reference: Any,
          model_info: ModelInfo, result: dict[str, Any]) -> Callable[[Path], Manifest]:
    """The write_bundle callback: export into tmp, write manifest + labels + reference, run parity."""
    from edge_sdk.bundle import finish_manifest, write_labels

    def fill(tmp: Path) -> Manifest:
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a bundle is shipped and shared like any folder
        spec = InputSpec.from_deploy(src.model.deploy)
        art = _export(target, src.model, example, opts, tmp, calib_loader(spec, opts))
        reference.save(tmp / parity_mod.REFERENCE_FILE)
        labels = write_labels(tmp, src.labels) if src.labels else None
        manifest = finish_manifest(tmp, build_manifest(target, opts, art, example, model_info, labels))
        with step("parity", "runtime vs PyTorch"):
            manifest = manifest.replace(parity=run_parity(tmp, target, art, opts.precision))
        result.update(art=art, manifest=manifest)
        return manifest

    return fill


def _export(target: Target, model: nn.Module, example: torch.Tensor, opts: ConvertOptions, tmp: Path,
            calib: Callable[[], list[torch.Tensor]]) -> Artifact:
    """Target.export with any toolchain exception turned into one EdgeError line."""
    with toolchain_errors(f"{target.name} conversion"):
        art = target.export(model, example, opts, tmp, calib)
    if not (tmp / art.file).exists():
        raise EdgeError(f"internal: target {target.name} did not write {art.file}")
    return art


def convert_one(src: Source, target: Target, opts: ConvertOptions, dest: Path, force: bool,
                example: torch.Tensor, reference: Any, model_info: ModelInfo) -> ConvertResult:
    from edge_sdk.bundle import write_bundle
    start = time.perf_counter()
    result: dict[str, Any] = {}
    path = write_bundle(dest, _fill(src, target, opts, example, reference, model_info, result), force=force)
    art, manifest = result["art"], result["manifest"]
    return ConvertResult(path, target.name, art.backend, str(opts.precision), art.file, _size(path / art.file),
                         art.report, manifest.parity, time.perf_counter() - start, target.summary(art.report))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


# ---- the public entry point --------------------------------------------------------------------------------------

def plan(target: str, opts: ConvertOptions) -> list[tuple[Target, ConvertOptions]]:
    """(target, resolved options) pairs to convert, checked before any work. `all`: every target's defaults."""
    if target != "all":
        t = get_target(target)
        return [(t, t.resolve(opts))]
    given = [flag for flag, on in (("--precision", opts.precision), ("--backend", opts.backend),
                                   ("--nhwc", opts.nhwc), ("--calib", opts.calib_dir),
                                   ("--deployment-target", opts.deployment_target)) if on]
    if given:
        raise UsageError(f"--target all uses each target's default precision and backend; "
                         f"{', '.join(given)} needs a single --target")
    return [(t, t.resolve(opts)) for t in load_targets().values()]


def _check_available(t: Target) -> None:
    ok, why = t.available()
    if not ok:
        raise EdgeError(f"target {t.name} is not available on this machine: {why}")


def convert(model: str | Path | nn.Module, target: str, opts: ConvertOptions, out_dir: Path,
            force: bool = False, checkpoint: Path | None = None, labels: list[str] | None = None,
            num_classes: int | None = None, show_progress: bool = True,
            pretrained: bool | str = False) -> list[ConvertResult]:
    """Convert one model to one target (or `all`) and return what was written.

    `ConvertOptions()` means each target's defaults (what `edge-sdk convert` builds without options). Every
    argument is checked (targets, options, calibration folder, destinations) before the first export, so a
    mistake costs no conversion time and leaves nothing behind.
    """
    jobs = plan(target, opts)
    for t, _ in jobs:
        _check_available(t)
    if opts.calib_dir is not None:
        check_calib_dir(opts.calib_dir, opts.calib_count)
    with _progress(show_progress)("load model"):
        src = resolve_model(model, checkpoint, num_classes, opts.input_size, pretrained)
        src.labels = resolve_labels(src.model, labels)
        deploy_model = _reparameterize(src.model)
    src = replace(src, model=deploy_model)
    if labels is not None or getattr(deploy_model.deploy, "labels", None):
        # Known labels (not the generic class_i) go into targets that embed them (Core ML classifier).
        jobs = [(t, replace(o, labels=tuple(src.labels))) for t, o in jobs]
    dests = [Path(out_dir) / bundle_name(src.name, t.name, str(o.backend), str(o.precision), o.nhwc)
             for t, o in jobs]
    _check_destinations(dests, force)
    example = deploy_model.example_inputs(1)[0]
    with _progress(show_progress)("PyTorch reference (parity set)"):
        model_info = model_section(src, example)
        reference = reference_for(deploy_model)
    results = []
    with step_hook(_progress(show_progress) if show_progress else None):
        for (t, o), dest in zip(jobs, dests):
            results.append(convert_one(src, t, o, dest, force, example, reference, model_info))
    return results


def _reparameterize(model: nn.Module) -> nn.Module:
    from edge_sdk.models import reparameterize_model
    return reparameterize_model(model)  # a copy in eval mode: the caller's model is untouched


def _check_destinations(dests: list[Path], force: bool) -> None:
    """Refuse an existing bundle without --force and an unwritable output folder before doing any work."""
    from edge_sdk.bundle import check_writable
    for dest in dests:
        check_writable(dest, force)


def _progress(show: bool) -> Callable[[str], Any]:
    """A step hook: a spinner while the step runs, then a '✓ step (1.2 s)' line on stderr."""
    @contextlib.contextmanager
    def hook(description: str) -> Iterator[None]:
        if not show:
            yield
            return
        from edge_sdk.output import err_console, progress
        start = time.perf_counter()
        with progress(f"{description} ..."):
            yield
        err_console.print(f"  [green]✓[/green] {description} ({time.perf_counter() - start:.1f} s)")
    return hook
