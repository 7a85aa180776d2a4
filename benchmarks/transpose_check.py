"""Per model: internal TRANSPOSE count in the fp32 .tflite, ExecuTorch XNNPACK fp32 delegation and parity, Core ML.

The issue's rule is "no TRANSPOSE inside the network" (TFLite) without breaking the other targets, so this prints
every number a layout rewrite can move, for a before/after comparison:

    .venv/bin/python benchmarks/transpose_check.py levit_tiny mobilevitv2_tiny          # tiny models
    .venv/bin/python benchmarks/transpose_check.py --coreml --json out.json levit_128s  # + Core ML convert

Parity is the .pte vs PyTorch eager on 4 seeded random inputs: max-abs / max|logit| (the zoo's bound is 1e-4).

`--latency` compares MobileViT's patch regrouping before and after the slice/concat rewrite in one run: each model
(realistic weights, reparameterized) is lowered twice, once with the previous regrouping (one-hot space-to-depth
conv + permutes, `legacy_regrouping()`, the code of commit d5db998) and once as it is now; both programs must give
the same logits, then one fresh process times them interleaved (ExecuTorch XNNPACK fp32 and LiteRT fp32, 1 thread):

    .venv/bin/python benchmarks/transpose_check.py --latency --json benchmarks/results/mobilevit_regroup.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import torch

TINY = ("levit_tiny", "cctt_micro", "pbhybrid_micro", "mobilevitv2_tiny", "mobilevit_tiny")
STANDARD = ("levit_128s", "mobilevitv2_050", "mobilevit_xxs")
LATENCY_MODELS = ("mobilevitv2_050", "mobilevit_xxs")
TIMING_MARK = "TIMING "


def tflite_transposes(model: torch.nn.Module, example: torch.Tensor, tmp: Path) -> dict:
    from edge_sdk.converters import tflite as T
    from edge_sdk.converters.tflite_report import build_report
    path = tmp / "m.tflite"
    path.write_bytes(T.convert_fp32(model, example, nhwc=True))
    rep = build_report(path)
    return {"internal_transpose": rep["internal_transpose_count"], "by_module": rep["transposes_by_module"],
            "reshape": rep["reshape_count"]}


def executorch_check(model: torch.nn.Module, example: torch.Tensor, tmp: Path) -> dict:
    from executorch.runtime import Runtime

    from edge_sdk.converters import executorch as E
    from edge_sdk.converters.base import ConvertOptions
    edge = E.lower(E.export_program(model, example), "xnnpack", ConvertOptions())
    rep = E.delegation_report(edge, "xnnpack")
    path = tmp / "m.pte"
    E.serialize(edge, path)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    g = torch.Generator().manual_seed(3)
    ratio = 0.0
    for _ in range(4):
        x = torch.randn(example.shape, generator=g)
        with torch.no_grad():
            ref = model(x)
        out = method.execute([x])[0]
        ratio = max(ratio, float((out - ref).abs().max() / ref.abs().max()))
    return {"subgraphs": rep["delegated_subgraphs"], "non_delegated": rep["non_delegated"], "parity": ratio}


def coreml_check(model: torch.nn.Module, example: torch.Tensor) -> str:
    import coremltools as ct
    ep = torch.export.export(model, (example,)).run_decompositions({})
    ct.convert(ep, convert_to="milinternal", minimum_deployment_target=ct.target.iOS17)
    return "ok"


def check(name: str, coreml: bool) -> dict:
    from edge_sdk.models import create_model
    torch.manual_seed(0)
    model = create_model(name, num_classes=100).reparameterize().eval()
    example = model.example_inputs(1)[0]
    row: dict = {"model": name}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        row.update(tflite_transposes(model, example, Path(d)))
        row.update(executorch_check(model, example, Path(d)))
        if coreml:
            try:
                row["coreml"] = coreml_check(model, example)
            except Exception as exc:  # report, keep measuring the others
                row["coreml"] = f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        row["seconds"] = round(time.time() - t0, 1)
    return row


# ---- before/after latency of the MobileViT patch regrouping ---------------------------------------------------
# The previous regrouping, kept here only as the "before" of the comparison (models/layers.py has the current one).

def _legacy_to_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    b, c, h, w = x.shape
    p2 = self.patch * self.patch
    y = torch.nn.functional.conv2d(x, self.weight, stride=self.patch, groups=c)  # (B, C*P, H/p, W/p)
    gh, gw = h // self.patch, w // self.patch
    t = y.permute(0, 2, 3, 1).reshape(b, gh * gw, c, p2).permute(0, 3, 1, 2)  # (B, P, N, C)
    return t.permute(0, 3, 1, 2), (gh, gw)


def _legacy_from_patches(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    b, c, _, _ = x.shape
    (gh, gw), p = grid, self.patch
    t = x.permute(0, 2, 3, 1).reshape(b * p, p, gh * gw, c)
    t = t.permute(0, 2, 1, 3).reshape(b, p, gh, gw * p * c)
    t = t.permute(0, 2, 1, 3).reshape(b, gh * p, gw * p, c)
    return t.permute(0, 3, 1, 2)


def _legacy_mixer_forward(self, x: torch.Tensor) -> torch.Tensor:
    tokens, grid = self.grid.to_patches(x)  # always regrouped the block's C channels
    return self.grid.from_patches(self.proj(self.norm(self.layers(self.conv_in(tokens)))), grid)


@contextlib.contextmanager
def legacy_regrouping() -> Iterator[None]:
    """Trace/run MobileViT blocks with the previous regrouping (same weights, same function)."""
    from edge_sdk.models.layers import PatchGrid
    from edge_sdk.models.mobilevit import PatchMixer
    saved = (PatchGrid.to_patches, PatchGrid.from_patches, PatchMixer.forward)
    PatchGrid.to_patches, PatchGrid.from_patches, PatchMixer.forward = (
        _legacy_to_patches, _legacy_from_patches, _legacy_mixer_forward)
    try:
        yield
    finally:
        PatchGrid.to_patches, PatchGrid.from_patches, PatchMixer.forward = saved


def _build_pair(name: str, tmp: Path) -> dict:
    """Lower one model before/after to .pte and .tflite; returns paths, TRANSPOSE counts and output differences."""
    from edge_sdk.converters import executorch as E
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.models import create_model
    from edge_sdk.runtime.realistic import fill_realistic_weights
    model = fill_realistic_weights(create_model(name), seed=0).reparameterize().eval()
    example = model.example_inputs(1)[0]
    row: dict = {"model": name}
    outs = {}
    for variant in ("before", "after"):
        ctx = legacy_regrouping() if variant == "before" else contextlib.nullcontext()
        with ctx, torch.no_grad():
            outs[variant] = model(example)
            edge = E.lower(E.export_program(model, example), "xnnpack", ConvertOptions())
            rep = E.delegation_report(edge, "xnnpack")
            E.serialize(edge, tmp / f"{name}_{variant}.pte")
            tfl = tflite_transposes(model, example, tmp)
        (tmp / "m.tflite").rename(tmp / f"{name}_{variant}.tflite")
        row[variant] = {"internal_transpose": tfl["internal_transpose"],
                        "xnnpack_subgraphs": rep["delegated_subgraphs"], "outside_delegate": rep["non_delegated"]}
    row["eager_max_abs_diff"] = float((outs["before"] - outs["after"]).abs().max())
    row["logit_scale"] = float(outs["after"].abs().max())
    return row


def _time_worker(paths: list[str], rounds: int, runs: int) -> None:
    """Fresh process, 1 thread: time every file in `paths` interleaved (ABAB...), print medians as JSON."""
    import numpy as np

    from edge_sdk.runtime.engines import open_executorch, open_tflite
    fns = [open_executorch(p, threads=1) if p.endswith(".pte") else open_tflite(p, threads=1) for p in paths]
    shapes = [(1, 3, 256, 256) if p.endswith(".pte") else (1, 256, 256, 3) for p in paths]  # .tflite is NHWC
    xs = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in shapes]
    outs = [fn(x) for fn, x in zip(fns, xs)]
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for i, (fn, x) in enumerate(zip(fns, xs)):
            for _ in range(runs):
                t0 = time.perf_counter()
                fn(x)
                times[i].append((time.perf_counter() - t0) * 1e3)
    res = {p: {"median_ms": statistics.median(t), "min_ms": min(t), "n": len(t)} for p, t in zip(paths, times)}
    # before/after pairs of the same runtime must agree (same weights, same function)
    pairs = {p: float(np.abs(o - outs[i + 1]).max()) for i, (p, o) in enumerate(zip(paths, outs))
             if "_before" in p and i + 1 < len(paths)}
    print(TIMING_MARK + json.dumps({"timings": res, "before_vs_after_max_abs": pairs}), flush=True)


def _versions() -> dict:
    from importlib.metadata import version
    return {"python": platform.python_version(), "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "cpu": _cpu_name(), "cores": __import__("os").cpu_count(),
            **{pkg: version(pkg) for pkg in ("torch", "executorch", "litert-torch", "ai-edge-litert")}}


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def latency_comparison(models: list[str], rounds: int, runs: int) -> dict:
    """Build before/after programs for every model, then time all of them in ONE fresh process."""
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": _versions(),
                    "threads": 1, "rounds": rounds, "runs_per_round": runs, "models": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths = []
        for name in models:
            result["models"].append(_build_pair(name, tmp))
            paths += [str(tmp / f"{name}_{v}{ext}") for ext in (".pte", ".tflite") for v in ("before", "after")]
        proc = subprocess.run([sys.executable, __file__, "--_time-worker", *paths, "--rounds", str(rounds),
                               "--runs", str(runs)], capture_output=True, text=True, check=True)
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(TIMING_MARK))
        timed = json.loads(line[len(TIMING_MARK):])
    for row in result["models"]:
        for ext, runtime in ((".pte", "executorch_fp32"), (".tflite", "litert_fp32")):
            for v in ("before", "after"):
                key = next(p for p in timed["timings"] if p.endswith(f"{row['model']}_{v}{ext}"))
                row[v][f"{runtime}_median_ms"] = round(timed["timings"][key]["median_ms"], 3)
                row[v][f"{runtime}_min_ms"] = round(timed["timings"][key]["min_ms"], 3)
            key = next(p for p in timed["before_vs_after_max_abs"] if p.endswith(f"{row['model']}_before{ext}"))
            row[f"{runtime}_before_vs_after_max_abs"] = timed["before_vs_after_max_abs"][key]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help=f"default: {' '.join(TINY + STANDARD)} ({' '.join(LATENCY_MODELS)} "
                                              "with --latency)")
    ap.add_argument("--coreml", action="store_true", help="also convert with coremltools (MIL)")
    ap.add_argument("--json", type=Path, help="append one JSON row per model to this file (--latency: write it)")
    ap.add_argument("--latency", action="store_true", help="before/after latency of the MobileViT regrouping")
    ap.add_argument("--rounds", type=int, default=5, help="--latency: interleaved rounds")
    ap.add_argument("--runs", type=int, default=20, help="--latency: timed runs per file and round")
    ap.add_argument("--_time-worker", dest="time_worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.time_worker:
        _time_worker(args.time_worker, args.rounds, args.runs)
        return
    if args.latency:
        result = latency_comparison(args.models or list(LATENCY_MODELS), args.rounds, args.runs)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return
    for name in args.models or TINY + STANDARD:
        row = check(name, args.coreml)
        print(f"{name:18s} transpose={row['internal_transpose']:3d} subgraphs={row['subgraphs']} "
              f"parity={row['parity']:.1e} outside={row['non_delegated']} coreml={row.get('coreml', '-')} "
              f"({row['seconds']} s)\n    by_module={row['by_module']}", flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
