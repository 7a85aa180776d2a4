"""Export timm models to .pt2 for benchmarks/bench_peers.py. Runs in the timm side venv ONLY:

    ~/timm-venv/bin/python benchmarks/timm_export.py OUT_DIR levit_128s:224 mobilevit_xxs:256 ...

(~/timm-venv: torch 2.14.1 + torchvision 0.29.1 + timm; the project's venv never gets timm, docs/TOOLCHAIN.md.)
Each model gets non-trivial weights first, like the zoo's benchmark weights (edge_sdk.runtime.realistic): exact
zeros (zero-init gammas, attention-bias tables) replaced by small noise, BN statistics from train-mode passes, so
LiteRT cannot prune branches and report latencies that are too good. Writes OUT_DIR/<name>.pt2 (torch.export,
loadable by the project's torch 2.13) and OUT_DIR/<name>.json (params, MACs from torch's FLOP counter / 2, timm
version).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def realistic(model: torch.nn.Module, size: int, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        zero = p == 0
        if zero.any():
            p[zero] = (torch.randn(int(zero.sum()), generator=g) * 0.02).to(p.dtype)
    model.train()
    for _ in range(3):  # BN statistics of order-one activations
        x = torch.nn.functional.interpolate(torch.randn(4, 3, 8, 8, generator=g), size=(size, size), mode="bilinear")
        model(x)
    return model.eval()


def export(name: str, size: int, out: Path) -> dict:
    torch.manual_seed(0)
    model = realistic(timm.create_model(name, pretrained=False, num_classes=1000), size)
    x = torch.randn(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    ep = torch.export.export(model, (x,))
    torch.export.save(ep, out / f"{name}.pt2")
    meta = {"name": name, "input_size": size, "params": sum(p.numel() for p in model.parameters()),
            "macs": counter.get_total_flops() // 2, "timm": timm.__version__, "torch": torch.__version__}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for spec in sys.argv[2:]:
        name, size = spec.split(":")
        if (out / f"{name}.pt2").exists() and (out / f"{name}.json").exists():
            continue
        print(json.dumps(export(name, int(size), out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
