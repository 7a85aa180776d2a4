"""Training recipes: one YAML file per family (in `recipes/`), every value overridable from the CLI.

A recipe is a flat mapping of the fields of `Recipe`; unknown keys are rejected with their names (a misspelt
`weight_decay` must not silently train with the default). Learning rates are given at `lr_base_batch` and scaled
linearly to the actual global batch (per-process batch x world size), as Goyal et al. 2017 and DeiT do.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from edge_sdk.errors import UsageError, did_you_mean, unknown

RECIPE_DIR = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class Recipe:
    """Defaults are the cpu-tiny values; family recipes override them with their papers' settings."""

    description: str = ""
    epochs: int = 10
    batch_size: int = 32            # per process; global batch = batch_size x world size
    lr: float = 1e-3                # peak lr at global batch `lr_base_batch`
    lr_base_batch: int = 32
    min_lr: float = 1e-5            # cosine floor, scaled like lr
    warmup_lr: float = 1e-6         # linear warmup starts here
    warmup_steps: int = 0           # optimizer steps; used when > 0, else warmup_epochs
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    conv_lr_scale: float = 1.0      # layer-wise lr: multiplier for convolutional/other parameters
    attn_lr_scale: float = 1.0      # ... and for attention/transformer parameters
    backbone_lr_scale: float = 1.0  # fine-tuning: lr multiplier of everything but the new classifier head
    freeze_stem: bool = False       # fine-tuning: keep the stem's weights (and BN statistics) fixed
    label_smoothing: float = 0.1
    clip_grad: float = 0.0          # max grad norm; 0 disables
    ema: bool = True
    ema_decay: float = 0.9998
    amp: str = "bf16"               # none | bf16 | fp16 (CUDA only; CPU always trains in fp32)
    channels_last: bool = False
    grad_checkpointing: bool = False
    compile: bool = False
    input_size: int = 0             # 0 = the model's deploy input size
    crop_scale_min: float = 0.08
    hflip: float = 0.5
    randaug_n: int = 2
    randaug_m: float = 9.0
    randaug_mstd: float = 0.5
    reprob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    distill: str = "none"           # none | soft | hard (DeiT)
    distill_alpha: float = 0.5      # weight of the distillation loss
    distill_tau: float = 1.0        # temperature of soft distillation
    workers: int = 4
    seed: int = 0
    eval_every: int = 1             # epochs between validations
    save_every_steps: int = 0       # extra mid-epoch last.pt saves (pre-emptible clusters); 0 = end of epoch only
    log_every_steps: int = 50


CHOICES = {"amp": ("none", "bf16", "fp16"), "distill": ("none", "soft", "hard")}


def fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Recipe)}


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read recipe {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must be a mapping of key: value")
    return data


def _coerce(key: str, value: Any) -> Any:
    """Check a value against the field's default type (ints accepted for floats, lists for tuples)."""
    default = Recipe.__dataclass_fields__[key].default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        value = _float_or_same(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and len(value) == len(default)
        value = tuple(float(v) for v in value) if ok else value
    else:
        ok = isinstance(value, type(default)) and not isinstance(value, bool)
    if not ok:
        raise UsageError(f"recipe key '{key}' expects {type(default).__name__}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise UsageError(f"recipe key '{key}' must be one of {', '.join(CHOICES[key])}, got {value!r}")
    return value


def _float_or_same(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_keys(keys: Iterable[str], where: str) -> None:
    valid = fields()
    bad = [k for k in keys if k not in valid]
    if bad:
        hints = "".join(did_you_mean(k, valid) for k in bad)
        raise UsageError(f"unknown recipe key(s) in {where}: {', '.join(bad)}{hints}")


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """`["epochs=3", "lr=1e-3"]` -> {"epochs": 3, "lr": 0.001} (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {item!r}: cannot parse value: {exc}") from exc
    return out


def load_recipe(name_or_path: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """A recipe by name (`mobilevitv2`, `cpu-tiny`) or YAML path, with overrides applied and validated."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        if name_or_path not in list_recipes():
            raise unknown("recipe", name_or_path, list_recipes())
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    elif not path.is_file():
        raise UsageError(f"recipe file not found: {path}")
    data = _read_yaml(path)
    _check_keys(data, str(path))
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(overrides, "overrides")
    merged = {**data, **overrides}
    return Recipe(**{k: _coerce(k, v) for k, v in merged.items()})


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(recipe).items()}
