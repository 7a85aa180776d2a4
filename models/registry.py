"""One registry of model variants: it feeds `create_model`, the CLI choices and the tests.

A variant factory is a function `(num_classes, **overrides) -> EdgeModel`; overrides are validated against the
family's frozen config dataclass, so a misspelt option is an error that names it, never silently ignored.

This module is a leaf: it imports no family. The families are gathered in one place, `models/families.py`
(imported by `edge_sdk/models/__init__.py`, so the table is full whenever `edge_sdk.models` is importable); each
family module adds its variants with `register(ModelEntry(...))`. Rebuilding a model from an edge-sdk checkpoint
(`model_from_checkpoint`) lives here too, because it needs `create_model`; models/checkpoint.py only reads and
writes weight files (so it is a leaf as well).
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge_sdk.errors import EdgeError, UsageError, unknown

from .base import DeployConfig, EdgeModel


@dataclass(frozen=True)
class ModelEntry:
    """A registered variant: its family, default config, deploy config and the class that builds it."""

    name: str
    family: str
    model_cls: type
    cfg: Any
    deploy: DeployConfig
    tiny: bool = False  # tiny variants exist for tests; `make demo` skips them
    published_params: float | None = None  # millions, at 1000 classes, from the paper/reference code


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add a variant; names are unique."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name} registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise unknown("model", name, _REGISTRY)
    return _REGISTRY[name]


def list_models(pattern: str = "*", include_tiny: bool = True) -> list[str]:
    """Registered variant names matching a shell-style pattern, sorted."""
    return sorted(n for n, e in _REGISTRY.items()
                  if fnmatch.fnmatch(n, pattern) and (include_tiny or not e.tiny))


DEPLOY_OPTIONS = {"input_size", "labels"}


def _split_overrides(entry: ModelEntry, overrides: dict[str, Any]) -> tuple[Any, DeployConfig]:
    fields = {f.name for f in dataclasses.fields(entry.cfg)}
    bad = sorted(k for k in overrides if k not in fields and k not in DEPLOY_OPTIONS)
    if bad:
        raise UsageError(f"unknown option(s) for {entry.name}: {', '.join(bad)}; "
                         f"valid: {', '.join(sorted(fields | DEPLOY_OPTIONS))}")
    cfg = dataclasses.replace(entry.cfg, **{k: v for k, v in overrides.items() if k in fields})
    deploy_kw = {k: v for k, v in overrides.items() if k in DEPLOY_OPTIONS and v is not None}
    if "labels" in deploy_kw:
        deploy_kw["labels"] = tuple(deploy_kw["labels"])
    return cfg, dataclasses.replace(entry.deploy, **deploy_kw)


def create_model(name: str, num_classes: int = 1000, checkpoint: str | Path | None = None,
                 pretrained: bool | str | Path = False, **overrides: Any) -> EdgeModel:
    """Build a zoo model by name.

    `overrides` may change any field of the family config, plus `input_size` and `labels` of the deploy config.
    `checkpoint` loads weights saved by this project (weights-only unpickling).
    `pretrained` loads published weights: True (the variant's own, `models.pretrained.PRETRAINED`), a
    .safetensors/.pth/.bin file or "hf-hub:timm/<name>.<tag>"; with num_classes != 1000 the head stays new.
    """
    entry = get_entry(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    if pretrained is not False and pretrained is not None:
        from .pretrained import pretrained_overrides
        overrides = pretrained_overrides(name, overrides)
    cfg, deploy = _split_overrides(entry, overrides)
    if deploy.labels is not None and len(deploy.labels) != num_classes:
        raise UsageError(f"{len(deploy.labels)} labels given for a model with {num_classes} classes")
    try:
        model = entry.model_cls(cfg, num_classes=num_classes, deploy=deploy)
    except (ValueError, AssertionError) as exc:
        raise UsageError(f"invalid configuration for {name}: {exc}") from exc
    model.name = name
    model.family = entry.family
    if pretrained is not False and pretrained is not None:
        from .pretrained import load_pretrained
        load_pretrained(model, pretrained)
    if checkpoint is not None:
        from .checkpoint import load_weights
        load_weights(model, checkpoint)
    return model


def factory(name: str) -> Callable[..., EdgeModel]:
    """A `create_model` partial, handy for tests and recipes."""
    return lambda **kw: create_model(name, **kw)


# ---- rebuilding a model from an edge-sdk checkpoint ------------------------------------------------------------

MAX_CLASSES = 100_000  # far above any classifier this project builds; 10**15 would allocate the head first


def check_meta(meta: dict[str, Any], path: str | Path) -> tuple[str, int, dict[str, Any]]:
    """Types and ranges of a checkpoint's model description, checked before anything is built from it."""
    name, classes, overrides = meta.get("name"), meta.get("num_classes"), meta.get("overrides")
    if not isinstance(name, str) or not name:
        raise EdgeError(f"checkpoint {path}: model name must be a non-empty string, got {_short(name)}")
    if isinstance(classes, bool) or not isinstance(classes, int) or not 1 <= classes <= MAX_CLASSES:
        raise EdgeError(f"checkpoint {path}: num_classes must be an integer from 1 to {MAX_CLASSES}, "
                        f"got {_short(classes)}")
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict) or not all(isinstance(k, str) and k.isidentifier() for k in overrides):
        raise EdgeError(f"checkpoint {path}: overrides must map option names to values, got {_short(overrides)}")
    return name, classes, overrides


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fits_weights(name: str, classes: int, kw: dict[str, Any], state: dict[str, Any], path: str | Path) -> None:
    """Build the described model on the meta device (no memory) and compare its tensor shapes with the file's, so
    hostile sizes in the metadata are refused before a real model is allocated."""
    import torch
    with torch.device("meta"):
        shell = create_model(name, num_classes=classes, **kw)
    own = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if own != theirs:
        bad = sorted(set(own) ^ set(theirs)) or sorted(k for k in own if own[k] != theirs.get(k))
        raise EdgeError(f"checkpoint {path}: the model its metadata describes has weights that do not match the "
                        f"file's ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})")


def model_from_checkpoint(path: str | Path, **overrides: Any) -> EdgeModel:
    """Rebuild the model a checkpoint describes and load its weights (for `edge-sdk convert CHECKPOINT`)."""
    from .checkpoint import model_meta, read_checkpoint, state_dict_of
    ckpt = read_checkpoint(path)
    meta = model_meta(ckpt)
    if meta is None:
        raise UsageError(f"{path} is not an edge-sdk checkpoint (no model name inside); "
                         "pass the model name and --checkpoint instead")
    name, classes, saved = check_meta(meta, path)
    kw = {**saved, **overrides}
    try:
        _fits_weights(name, classes, kw, state_dict_of(ckpt), path)
    except (TypeError, ValueError, AssertionError, RuntimeError, IndexError, KeyError) as exc:
        raise EdgeError(f"checkpoint {path}: invalid model configuration {_short(kw)}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    return create_model(name, num_classes=classes, checkpoint=path, **kw)
