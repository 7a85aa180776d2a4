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
    b.update(compare.latency(src.model, runs=runs))
    load.append(os.getloadavg()[0])
    a.update(compare.latency(result.model, runs=runs))
    load.append(os.getloadavg()[0])
    return {"before": b, "after": a, "rows": compare.table(b, a), "applied": result.applied,
            "refused": result.refused, "parity": result.parity,
            "outside_after": after["targets"]["executorch"]["outside_by_op"],
            "tflite_error_before": before["targets"]["tflite"].get("error"),
            "tflite_error_after": after["targets"]["tflite"].get("error"),
            "source": src.model.config_dict(), "seconds": round(time.time() - t0, 1),
            "load_average": [round(x, 2) for x in load], "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


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
             "each bundle in a fresh process. Script: benchmarks/byom_peers.py. Random-init timm weights "
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
    ap.add_argument("step", choices=["export", "run", "all"])
    ap.add_argument("folder", nargs="?", type=Path, default=Path("/tmp/byom_peers"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    names = [n for n in args.models.split(",") if n]
    if args.step in ("export", "all"):
        export_models(args.folder, names)
    if args.step == "run":
        run_models(args.folder, names, args.runs)
    if args.step == "all":
        cmd = [str(PROJECT_PY), __file__, "run", str(args.folder), "--models", args.models, "--runs", str(args.runs)]
        return subprocess.call(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
