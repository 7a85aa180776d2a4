"""One registry of model variants: it feeds `create_model`, the CLI choices and the tests.

A variant factory is a function `(num_classes, **overrides) -> EdgeModel`; overrides are validated against the
family's frozen config dataclass, so a misspelt option is an error that names it, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge_sdk.errors import UsageError, unknown

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


def _load_families() -> None:
    # Importing the family modules registers their variants (kept lazy to avoid import cycles).
    from . import families  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        raise unknown("model", name, _REGISTRY)
    return _REGISTRY[name]


def list_models(pattern: str = "*", include_tiny: bool = True) -> list[str]:
    """Registered variant names matching a shell-style pattern, sorted."""
    _load_families()
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
                 **overrides: Any) -> EdgeModel:
    """Build a zoo model by name.

    `overrides` may change any field of the family config, plus `input_size` and `labels` of the deploy config.
    `checkpoint` loads weights saved by this project (weights-only unpickling).
    """
    entry = get_entry(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    cfg, deploy = _split_overrides(entry, overrides)
    if deploy.labels is not None and len(deploy.labels) != num_classes:
        raise UsageError(f"{len(deploy.labels)} labels given for a model with {num_classes} classes")
    try:
        model = entry.model_cls(cfg, num_classes=num_classes, deploy=deploy)
    except (ValueError, AssertionError) as exc:
        raise UsageError(f"invalid configuration for {name}: {exc}") from exc
    model.name = name
    model.family = entry.family
    if checkpoint is not None:
        from .checkpoint import load_weights
        load_weights(model, checkpoint)
    return model


def factory(name: str) -> Callable[..., EdgeModel]:
    """A `create_model` partial, handy for tests and recipes."""
    return lambda **kw: create_model(name, **kw)
