"""Bring-your-own-model on real peers: timm hybrids before and after `edge-sdk lint --fix`.

timm cannot be imported in the project's venv (torchvision needs CUDA libraries beside the CPU torch wheel), so
this runs in two halves:

1. `~/timm-venv/bin/python benchmarks/byom_peers.py export --out /tmp/byom_peers` (timm's venv): builds each
   timm model (random init, parameters perturbed so no weight is exactly zero — LiteRT would prune branches),
   applies timm's own deploy reparameterization (`timm.utils.reparameterize_model`: FastViT/MobileOne branches
   merged), and saves it with `torch.export.save` as `<name>.pt2` with its eval preprocessing (pretrained_cfg
   mean/std/crop_pct) stored in `edge_sdk.json`, exactly the file a user would bring.
2. `.venv/bin/python benchmarks/byom_peers.py run /tmp/byom_peers` (project venv): for each .pt2, lint
   (ExecuTorch + TFLite), `--fix`, lint again, latency p50 at 1 thread in ExecuTorch (XNNPACK fp32) and LiteRT fp32
   before and after (bundles converted by the normal pipeline, parity included, each timed in a fresh process).
   Results: benchmarks/results/byom_peers.{json,md} with machine and versions, written after every model.

`~/timm-venv/bin/python benchmarks/byom_peers.py all` does both (it calls the project venv for step 2).
`.venv/bin/python benchmarks/byom_peers.py norms`: exact GroupNorm(1) forms (the original op, conv-then-mean, the
spatial-mean-first form `groupnorm1_to_edge` writes now) lowered to XNNPACK and timed in one process at 1 thread;
results in benchmarks/results/byom_peers.norms.{json,md}.
Targets (issue 11): one XNNPACK subgraph with nothing outside after --fix, mobilevitv2 converts to TFLite, fp32
parity within 1e-5, ExecuTorch latency >= 1.5x better. Misses are reported as measured.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("mobilevitv2_050", "mobilevit_xxs", "levit_128s", "mobilenetv4_hybrid_medium", "efficientformer_l1",
          "fastvit_t8")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "byom_peers"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
NOTES = "## Notes"  # everything from this heading on in byom_peers.md is kept when the table is rewritten


# ---- step 1: in timm's venv -------------------------------------------------------------------------------------

def export_models(out: Path, names: list[str]) -> None:
    import timm
    import torch
    from timm.utils.model import reparameterize_model
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        model = reparameterize_model(model).eval()
        cfg = model.pretrained_cfg
        size = cfg["input_size"][-1]
        ep = torch.export.export(model, (torch.randn(1, 3, size, size),))
        meta = {"name": name, "source": {"timm": timm.__version__, "torch": torch.__version__,
                                         "model": name, "weights": "random init + 0.01 noise"},
                "deploy": {"mean": list(cfg["mean"]), "std": list(cfg["std"]), "crop_pct": cfg["crop_pct"]}}
        torch.export.save(ep, str(out / f"{name}.pt2"), extra_files={"edge_sdk.json": json.dumps(meta)})
        print(f"exported {name} ({size}x{size})", flush=True)


# ---- step 2: in the project venv ------------------------------------------------------------------------------

def run_models(folder: Path, names: list[str], runs: int) -> None:
    from edge_sdk import doctor
    from edge_sdk.bench import machine_info
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS.with_suffix(".json")
    done = json.loads(out_json.read_text())["models"] if out_json.exists() else {}
    header = {"machine": machine_info(), "toolchain": doctor.toolchain_versions(), "runs": runs}
    for name in names:
        try:
            done[name] = _one(folder, name, runs)
        except Exception as exc:  # a model the pipeline cannot take is a result too, not the end of the run
            done[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
        out_json.write_text(json.dumps({**header, "models": done}, indent=2, default=str))
        md = RESULTS.with_suffix(".md")
        notes = md.read_text().partition(NOTES)[2] if md.exists() else ""  # hand-written notes survive a re-run
        md.write_text(markdown(header, done) + (f"\n{NOTES}{notes}" if notes else ""))
        print(f"{name}: {json.dumps(done[name].get('rows') or done[name], default=str)}", flush=True)


def _one(folder: Path, name: str, runs: int) -> dict:
    from edge_sdk.converters.lint import compare, lint_model
    from edge_sdk.converters.lint.fix import fix_model, save_pt2
    from edge_sdk.converters.sources import resolve_source
    t0 = time.time()
    src = resolve_source(folder / f"{name}.pt2")
    before = lint_model(src.model, ("executorch", "tflite"))
    result = fix_model(src.model)
    save_pt2(result, folder / f"{name}-fixed.pt2", deploy_given=True)
    after = lint_model(result.model, ("executorch", "tflite"))
    b, a = dict(before["summary"]), dict(after["summary"])
    load = [os.getloadavg()[0]]  # 1-min load average around the timed runs: latencies are contended when high
    lb, la = compare.latency_pair(src.model, result.model, runs=runs, rounds=2)  # interleaved b, a, b, a
    load.append(os.getloadavg()[0])
    b.update(lb)
    a.update(la)
    return {"before": b, "after": a, "rows": compare.table(b, a), "applied": result.applied,
            "refused": result.refused, "parity": result.parity,
            "outside_after": after["targets"]["executorch"]["outside_by_op"],
            "tflite_error_before": before["targets"]["tflite"].get("error"),
            "tflite_error_after": after["targets"]["tflite"].get("error"),
            "source": src.model.config_dict(), "seconds": round(time.time() - t0, 1),
            "load_average": [round(x, 2) for x in load], "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# ---- norms: exact GroupNorm(1) forms in XNNPACK (project venv) --------------------------------------------------

NORM_SHAPES = ((64, 32), (128, 16), (256, 8))  # (C, H=W): a conv -> norm stack at MobileViTv2-like sizes


def _norm_forms() -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Form(nn.Module):
        def __init__(self, c: int, kind: str) -> None:
            super().__init__()
            self.kind, self.w, self.b = kind, nn.Parameter(torch.randn(c)), nn.Parameter(torch.randn(c))
            self.register_buffer("avg", torch.full((1, c, 1, 1), 1.0 / c))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w, b = self.w.view(1, -1, 1, 1), self.b.view(1, -1, 1, 1)
            if self.kind == "group_norm op":
                return F.group_norm(x, 1, self.w, self.b, 1e-5)
            if self.kind == "conv 1/C then mean (old)":
                d = x - F.conv2d(x, self.avg).mean((2, 3), keepdim=True)
                return d * torch.rsqrt(F.conv2d(d * d, self.avg).mean((2, 3), keepdim=True) + 1e-5) * w + b
            if self.kind == "reshape + mean over (2, 3)":
                n, c, h, ww = x.shape
                d = x - x.reshape(n, 1, c, h * ww).mean((2, 3), keepdim=True)
                return d * (torch.rsqrt((d * d).reshape(n, 1, c, h * ww).mean((2, 3), keepdim=True) + 1e-5) * w) + b
            # "mean then conv 1/C (new)": what groupnorm1_to_edge / GroupNormEdge write
            d = x - F.conv2d(x.mean((2, 3), keepdim=True), self.avg)
            return d * (torch.rsqrt(F.conv2d((d * d).mean((2, 3), keepdim=True), self.avg) + 1e-5) * w) + b
    return {"cls": Form, "kinds": ("group_norm op", "conv 1/C then mean (old)", "reshape + mean over (2, 3)",
                                   "mean then conv 1/C (new)")}


def _time_norm(kind: str, c: int, hw: int, reps: int) -> dict:
    import tempfile

    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    from torch import nn
    form = _norm_forms()["cls"]

    class Stack(nn.Module):  # six conv -> norm pairs: the norm sits between delegated convs, as in a model
        def __init__(self, k: str) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.convs = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(6))
            self.norms = nn.ModuleList(form(c, k) for _ in range(6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for conv, norm in zip(self.convs, self.norms):
                x = norm(conv(x))
            return x
    net, ref = Stack(kind).eval(), Stack("group_norm op").eval()
    x = torch.randn(1, c, hw, hw) * 3 + 1
    edge = to_edge_transform_and_lower(torch.export.export(net, (x,)), partitioner=[XnnpackPartitioner()])
    nodes = [n for n in edge.exported_program().graph_module.graph.nodes if n.op == "call_function"]
    delegates = sum("call_delegate" in str(n.target) for n in nodes)
    with tempfile.NamedTemporaryFile(suffix=".pte") as f:
        f.write(edge.to_executorch().buffer)
        f.flush()
        method = Runtime.get().load_program(f.name).load_method("forward")
        with torch.no_grad():
            r = ref(x)
        err = float((method.execute([x])[0] - r).abs().max() / r.abs().max())
        for _ in range(5):
            method.execute([x])
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            method.execute([x])
            times.append((time.perf_counter() - t) * 1e3)
    return {"form": kind, "channels": c, "size": hw, "xnnpack_subgraphs": delegates,
            "max_err_ratio": err, "p50_ms": sorted(times)[len(times) // 2]}


def run_norms(reps: int) -> None:
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    from edge_sdk import doctor
    from edge_sdk.bench import machine_info
    _unsafe_reset_threadpool(1)
    load = [os.getloadavg()[0]]
    rows = [_time_norm(k, c, hw, reps) for c, hw in NORM_SHAPES for k in _norm_forms()["kinds"]]
    load.append(os.getloadavg()[0])
    header = {"machine": machine_info(), "toolchain": doctor.toolchain_versions(), "runs": reps,
              "load_average": [round(x, 2) for x in load]}
    out_json, out_md = RESULTS.parent / "byom_peers.norms.json", RESULTS.parent / "byom_peers.norms.md"
    out_json.write_text(json.dumps({**header, "rows": rows}, indent=2, default=str))
    lines = ["# Exact GroupNorm(1) forms in XNNPACK (six conv -> norm pairs, fp32, 1 thread, one process)", "",
             f"Machine: {json.dumps(header['machine'], default=str)}; runs {reps}; 1-min load average "
             f"{load[0]:.1f} -> {load[1]:.1f} (contended: compare rows of one shape only). "
             "Script: `benchmarks/byom_peers.py norms`.", "",
             "| C x H x W | form | XNNPACK subgraphs | max err / max|out| | p50 ms | vs group_norm op |",
             "|---|---|---|---|---|---|"]
    for c, hw in NORM_SHAPES:
        group = [r for r in rows if r["channels"] == c and r["size"] == hw]
        base = group[0]["p50_ms"]
        lines += [f"| {c}x{hw}x{hw} | {r['form']} | {r['xnnpack_subgraphs']} | {r['max_err_ratio']:.1e} | "
                  f"{r['p50_ms']:.3f} | {base / r['p50_ms']:.2f}x |" for r in group]
    out_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def _f(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"
    return "n/a" if v is None else str(v)


def _load(r: dict) -> str:
    la = r.get("load_average")
    return " / ".join(f"{x:.1f}" for x in la) if la else r.get("load_average_note", "not recorded")


def markdown(header: dict, models: dict) -> str:
    m, tc = header["machine"], header["toolchain"]
    lines = ["# timm peers before / after `edge-sdk lint --fix`", "",
             f"Machine: {json.dumps(m, default=str)}", "",
             f"Toolchain: {json.dumps(tc, default=str)}; latency p50 of {header['runs']} runs at 1 thread, fp32, "
             "each bundle in a fresh process; rows with two load values were timed interleaved (before, after, "
             "before, after; lowest p50 of 2 rounds), rows with three before, then after. "
             "Script: benchmarks/byom_peers.py. Random-init timm weights "
             "(+0.01 noise), timm's own reparameterization before export.", "",
             "| model | XNNPACK subgraphs | ops outside | TFLite converts | TFLite TRANSPOSE | ExecuTorch p50 ms "
             "| speed-up | load avg (1 min) | LiteRT p50 ms | fix parity (max err / max|out|) | rules applied |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in models.items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} ||||||||||")
            continue
        b, a = r["before"], r["after"]
        eb, ea = b.get("executorch_p50_ms"), a.get("executorch_p50_ms")
        speed = f"{eb / ea:.2f}x" if eb and ea else "n/a"
        rules = ", ".join(sorted({x["rule"] for x in r["applied"]}))
        lines.append(f"| {name} | {_f(b['xnnpack_subgraphs'])} -> {_f(a['xnnpack_subgraphs'])} | "
                     f"{_f(b['ops_outside_xnnpack'])} -> {_f(a['ops_outside_xnnpack'])} | "
                     f"{_f(b['tflite_convertible'])} -> {_f(a['tflite_convertible'])} | "
                     f"{_f(b['tflite_transposes'])} -> {_f(a['tflite_transposes'])} | {_f(eb)} -> {_f(ea)} | "
                     f"{speed} | {_load(r)} | {_f(b.get('litert_p50_ms'))} -> {_f(a.get('litert_p50_ms'))} | "
                     f"{r['parity']['max_abs_ratio']:.1e} | {rules} |")
    lines += ["", "Ops still outside XNNPACK after --fix, and refused rewrites:", ""]
    for name, r in models.items():
        if "error" in r:
            continue
        refused = "; ".join(f"{x['rule']}: {x['reason']}" for x in r["refused"]) or "none"
        lines.append(f"- {name}: outside {r['outside_after'] or 'nothing'}; refused: {refused}"
                     + (f"; TFLite error after: {r['tflite_error_after']}" if r.get("tflite_error_after") else ""))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["export", "run", "all", "norms"])
    ap.add_argument("folder", nargs="?", type=Path, default=Path("/tmp/byom_peers"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n]
    if args.step in ("export", "all"):
        export_models(args.folder, names)
    if args.step == "run":
        run_models(args.folder, names, args.runs)
    if args.step == "norms":
        run_norms(args.runs * 2)
    if args.step == "all":
        cmd = [str(PROJECT_PY), __file__, "run", str(args.folder), "--models", args.models, "--runs", str(args.runs)]
        return subprocess.call(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
