"""`--fix`: apply every rewrite rule, keep each one only if the model still computes the same function.

Each rule runs on a copy of the current model; the copy is re-exported (fresh shapes for the next rule) and its
fp32 outputs on real decoded images (procedural scenes, PNG round trip, the model's deploy preprocessing) and seeded
random inputs are compared with the ORIGINAL model's (so rounding cannot accumulate past the limit across rules). A rule whose max-abs difference exceeds
`PARITY_LIMIT` x max|output| is refused with that number as the reason; so is one that fails to export. At the
end the fixed model is compared with the original the same way.
"""
from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_sdk.errors import EdgeError

from .rewrites import GRAPH_RULES, MODULE_RULES, Rule

PARITY_LIMIT = 1e-5  # max-abs difference / max|output|, on images and on random inputs
PARITY_IMAGES, PARITY_RANDOM, PARITY_SEED = 8, 4, 20240
GRAPH_PASSES = 3  # rules enable each other (a split into projections leaves weight slices to fold)


@dataclass
class FixResult:
    model: nn.Module  # the fixed model (ExternalModel around an exported GraphModule), ready for the pipeline
    program: torch.export.ExportedProgram
    applied: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "refused": self.refused, "parity": self.parity}


def parity_inputs(deploy: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, random): decoded images preprocessed with the model's deploy settings, and seeded normal inputs."""
    from edge_sdk.converters.parity import parity_images
    from edge_sdk.preprocess import normalize, resize_center_crop
    size = int(deploy.input_size)
    images = parity_images(PARITY_IMAGES, int(deploy.resize))
    x = np.stack([normalize(resize_center_crop(img, int(deploy.resize), size), deploy.mean, deploy.std)
                  for img in images])
    rnd = np.random.default_rng(PARITY_SEED).standard_normal((PARITY_RANDOM, 3, size, size)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(rnd)


@torch.no_grad()
def outputs(net: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> list[np.ndarray]:
    """Batch-1 forward of every input (exported programs are fixed to batch 1)."""
    return [np.concatenate([net(x[i:i + 1]).float().numpy() for i in range(len(x))]) for x in inputs]


def difference(ref: list[np.ndarray], out: list[np.ndarray]) -> float:
    """Worst max-abs error / max|reference| over the image and random sets (inf when not finite)."""
    worst = 0.0
    for r, o in zip(ref, out):
        if r.shape != o.shape or not np.isfinite(o).all():
            return float("inf")
        worst = max(worst, float(np.abs(r.astype(np.float64) - o).max() / (np.abs(r).max() or 1.0)))
    return worst


def export(net: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    try:
        return torch.export.export(net, (example,))
    except Exception as exc:
        raise EdgeError(f"torch.export failed: {type(exc).__name__}: {_first(exc)}") from exc


def _first(exc: BaseException) -> str:
    return ((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:300]


def _try(rule: Rule, current: nn.Module, example: torch.Tensor, ref: list[np.ndarray],
         inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[nn.Module | None, dict[str, Any]]:
    """Apply one rule to a copy; (new model, record) when it keeps the function, (None, record) otherwise."""
    cand = copy.deepcopy(current)
    try:
        sites = rule.apply(cand, example) if rule.level == "module" else rule.apply(cand)
    except Exception as exc:  # a rule meeting a pattern it does not handle must not end the fix
        return None, {"rule": rule.name, "reason": f"rewrite failed: {type(exc).__name__}: {_first(exc)}"}
    if not sites:
        return None, {}
    try:
        cand = export(cand, example).module() if rule.level == "graph" else cand
        err = difference(ref, outputs(cand, inputs))
    except Exception as exc:
        return None, {"rule": rule.name, "sites": sites, "reason": f"rewritten model fails: {_first(exc)}"}
    record = {"rule": rule.name, "summary": rule.summary, "design_rule": rule.design_rule, "sites": sites,
              "max_abs_ratio": err}
    if err > PARITY_LIMIT:
        return None, {**record, "reason": f"outputs changed by {err:.2e} x max|output| (limit {PARITY_LIMIT:.0e})"}
    return cand, record


def fix_net(net: nn.Module, example: torch.Tensor, deploy: Any) -> tuple[nn.Module, list[dict], list[dict], float]:
    """Module rules (when `net` is plain PyTorch), then graph rules to a fixpoint; returns the exported fixed
    GraphModule, applied and refused records, and its difference from the original."""
    inputs = parity_inputs(deploy)
    original = outputs(net, inputs)
    applied: list[dict] = []
    refused: list[dict] = []
    # every candidate is compared with the ORIGINAL outputs, so the fixed model's total drift stays under the limit
    current = net
    if not isinstance(net, torch.fx.GraphModule):
        current = copy.deepcopy(net).eval()
        for rule in MODULE_RULES:
            current = _step(rule, current, example, original, inputs, applied, refused)
    current = export(current, example).module()
    for _ in range(GRAPH_PASSES):
        before = len(applied)
        for rule in GRAPH_RULES:
            current = _step(rule, current, example, original, inputs, applied, refused)
        if len(applied) == before:
            break
    return current, applied, _dedupe(refused), difference(original, outputs(current, inputs))


def _step(rule: Rule, current: nn.Module, example: torch.Tensor, original: list[np.ndarray],
          inputs: tuple[torch.Tensor, torch.Tensor], applied: list[dict], refused: list[dict]) -> nn.Module:
    new, record = _try(rule, current, example, original, inputs)
    if new is None:
        if record:
            refused.append(record)
        return current
    applied.append(record)
    return new


def _dedupe(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        key = (r["rule"], r.get("reason"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def fix_model(model: nn.Module) -> FixResult:
    """Fix a resolved model (zoo model or ExternalModel); the result keeps its name, deploy settings and classes."""
    from edge_sdk.converters.sources import ExternalModel
    from edge_sdk.models import reparameterize_model
    model = reparameterize_model(model)  # what ships is the deploy form (conv+BN fused, MobileOne branches merged)
    net = model.net if isinstance(model, ExternalModel) else model
    example = model.example_inputs(1)[0]
    fixed, applied, refused, err = fix_net(net, example, model.deploy)
    source = dict(getattr(model, "source", {}) or {"kind": "zoo", "name": getattr(model, "name", "")})
    source["rewrites"] = [a["rule"] for a in applied]
    out = ExternalModel(fixed, getattr(model, "name", "model"), model.deploy, int(model.num_classes), source)
    program = export(fixed, example)
    parity = {"max_abs_ratio": err, "limit": PARITY_LIMIT, "passed": err <= PARITY_LIMIT,
              "inputs": f"{PARITY_IMAGES} decoded images + {PARITY_RANDOM} seeded random inputs, fp32"}
    if err > PARITY_LIMIT:
        raise EdgeError(f"internal: the fixed model differs from the original by {err:.2e} x max|output|")
    return FixResult(out, program, applied, refused, parity)


def save_pt2(result: FixResult, path: Path, deploy_given: bool) -> Path:
    """The fixed program as a .pt2 that `edge-sdk convert` accepts, with deploy settings and rewrites inside."""
    from edge_sdk.bundle import atomic_write
    from edge_sdk.converters.sources import PT2_META
    m = result.model
    d = m.deploy
    meta = {"format": "edge-sdk-fix", "name": m.name, "rewrites": [a["rule"] for a in result.applied],
            "source": {k: v for k, v in m.source.items() if k != "rewrites"},
            **({"deploy": {"input_size": d.input_size, "mean": list(d.mean), "std": list(d.std),
                           "crop_pct": d.crop_pct, "labels": list(d.labels) if d.labels else None}}
               if deploy_given else {})}
    buffer = io.BytesIO()
    torch.export.save(result.program, buffer, extra_files={PT2_META: json.dumps(meta)})
    return atomic_write(path, buffer.getvalue())
