"""`edge-sdk lint SOURCE`: what falls off each delegate and why; `--fix OUT` rewrites it with parity proven.

SOURCE is anything convert takes: a zoo name, an edge-sdk checkpoint, a `torch.export` .pt2, or user code
`path/to/file.py:factory` / `package.module:factory` (importing it RUNS that code). Exit codes for CI: 0 clean,
1 findings, 2 usage error.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

import click

LINT_TARGETS = ("executorch", "tflite", "coreml", "all")


def source_options(fn: Callable) -> Callable:
    """The options that describe a model source (shared by lint and convert)."""
    opts = [
        click.option("--weights", type=click.Path(path_type=Path), default=None,
                     help="Weights for a file.py:factory model (.safetensors or a weights-only state dict); "
                          "published-layout weights for a zoo name."),
        click.option("--mean", default=None, help="Normalization mean R,G,B for .pt2/factory sources."),
        click.option("--std", default=None, help="Normalization std R,G,B for .pt2/factory sources."),
        click.option("--crop-pct", type=click.FloatRange(0.1, 1.0), default=None,
                     help="Center-crop fraction for .pt2/factory sources (resize = input / crop-pct; default 0.875)."),
    ]
    return functools.reduce(lambda f, o: o(f), reversed(opts), fn)


def byom_options(fn: Callable) -> Callable:
    """convert's options for .pt2 / file.py:factory sources and --fix (its --weights is shared with issue 10's
    published weights: for a factory it is the user's state dict)."""
    opts = [
        click.option("--mean", default=None, help="Normalization mean R,G,B for .pt2/file.py:factory sources."),
        click.option("--std", default=None, help="Normalization std R,G,B for .pt2/file.py:factory sources."),
        click.option("--crop-pct", type=click.FloatRange(0.1, 1.0), default=None,
                     help="Center-crop fraction for .pt2/factory sources (default 0.875)."),
        click.option("--fix", is_flag=True, help="Lint, apply the parity-checked rewrites (edge-sdk lint --fix), "
                     "then convert; the manifest records the rewrites (model.config.rewrites)."),
    ]
    return functools.reduce(lambda f, o: o(f), reversed(opts), fn)


def is_byom(model: str) -> bool:
    """Sources whose deploy settings come from options: a .pt2 or file.py:factory / package.module:factory."""
    from edge_sdk.converters.sources import is_external
    return is_external(model)


def resolve_for_convert(model: str, fix: bool, checkpoint: Path | None, weights: str | None,
                        input_size: int | None, num_classes: int | None, labels: list[str] | None,
                        mean: str | None, std: str | None, crop_pct: float | None, pretrained: bool,
                        show_progress: bool = True) -> Any:
    """`convert SOURCE [--fix]`: the resolved model (fixed when asked) for the pipeline, which takes modules."""
    from edge_sdk.converters.sources import resolve_source
    from edge_sdk.output import err_console
    opts = source_opts(checkpoint, Path(weights) if weights else None, input_size, num_classes, labels, mean, std,
                       crop_pct, require_deploy=True)
    if pretrained and weights is None and not is_byom(model):
        from dataclasses import replace
        opts = replace(opts, pretrained=True)
    src = resolve_source(model, opts)
    if not fix:
        return src.model
    from edge_sdk.converters.lint.fix import fix_model
    result = fix_model(src.model)
    if show_progress:
        rules = ", ".join(f"{a['rule']} x{len(a['sites'])}" for a in result.applied) or "nothing to rewrite"
        err_console.print(f"  [green]✓[/green] --fix: {rules} (parity {result.parity['max_abs_ratio']:.1e} x "
                          "max|output|)")
    result.model.source["fix"] = {"applied": [{k: a[k] for k in ("rule", "sites", "max_abs_ratio")}
                                              for a in result.applied],
                                  "refused": result.refused, "parity": result.parity}
    return result.model


def print_external_info(spec: str, input_size: int | None, as_json: bool) -> None:
    """`edge-sdk info model.pt2|file.py:factory`: source, deploy settings, classes, params, MACs."""
    from edge_sdk.converters.sources import SourceOptions, resolve_source
    from edge_sdk.models import count_macs, count_params
    from edge_sdk.output import human_count, print_json, print_table
    m = resolve_source(spec, SourceOptions(input_size=input_size, require_deploy=False)).model
    info = {"name": m.name, "family": m.family, "source": m.config_dict(), "deploy": m.deploy.to_dict(),
            "num_classes": m.num_classes, "params": count_params(m), "macs": count_macs(m)}
    if as_json:
        print_json(info)
        return
    print_table(f"{m.name} ({spec})", ["key", "value"],
                [("source", info["source"].get("kind")), ("classes", m.num_classes),
                 ("input", f"{m.deploy.input_size}x{m.deploy.input_size}, mean={m.deploy.mean}, std={m.deploy.std}"
                  + ("" if info["source"].get("deploy_given") else " (defaults: give --mean/--std to convert)")),
                 ("params", f"{info['params']:,} ({human_count(info['params'])})"),
                 ("MACs", human_count(info["macs"]))])


def source_opts(checkpoint: Path | None, weights: Path | None, input_size: int | None, num_classes: int | None,
                labels: list[str] | None, mean: str | None, std: str | None, crop_pct: float | None,
                require_deploy: bool) -> Any:
    from edge_sdk.converters.sources import SourceOptions, parse_triple
    return SourceOptions(checkpoint=checkpoint, weights=weights, input_size=input_size, num_classes=num_classes,
                         labels=tuple(labels) if labels else None, mean=parse_triple(mean, "--mean"),
                         std=parse_triple(std, "--std"), crop_pct=crop_pct, require_deploy=require_deploy)


@click.command("lint")
@click.argument("source")
@click.option("--target", "-t", type=click.Choice(LINT_TARGETS), default="all", show_default=True,
              help="Which delegates to check.")
@click.option("--fix", "fix_out", type=click.Path(path_type=Path), default=None,
              help="Rewrite the model (parity-checked) and write OUT.pt2 (or OUT/<name>.pt2) + the before/after table.")
@click.option("--no-latency", is_flag=True, help="With --fix: skip the ExecuTorch/LiteRT latency rows (faster).")
@click.option("--input-size", type=click.IntRange(32, 2048), default=None, help="Input size (factory sources).")
@click.option("--num-classes", type=click.IntRange(1), default=None, help="Expected number of classes.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path), default=None,
              help="Text file with one class label per line.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Weights for a zoo name.")
@source_options
@click.option("--force", is_flag=True, help="Replace an existing --fix output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def lint_cmd(source: str, target: str, fix_out: Path | None, no_latency: bool, input_size: int | None,
             num_classes: int | None, labels_file: Path | None, checkpoint: Path | None, weights: Path | None,
             mean: str | None, std: str | None, crop_pct: float | None, force: bool, as_json: bool) -> None:
    """Say, per op, what falls off each delegate (XNNPACK, TFLite GPU/NNAPI, the Neural Engine), why (the edge
    rule from docs/DESIGN.md) and where (module path and file:line of your code), and what --fix can do.

    Exit code: 0 clean, 1 findings (after --fix: findings left), 2 usage error. Importing a file.py:factory
    runs its code; .pt2 files and weights are loaded without unpickling code.

    \b
    Example:
      edge-sdk lint mobilevitv2_050 --target executorch
      edge-sdk lint my_model.py:build --input-size 224 --weights model.safetensors --json
      edge-sdk lint exported.pt2 --fix fixed/ --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
    """
    from edge_sdk.converters.lint import TARGETS, lint_model
    from edge_sdk.converters.pipeline import read_labels
    from edge_sdk.converters.sources import resolve_source
    labels = read_labels(labels_file) if labels_file else None
    targets = TARGETS if target == "all" else (target,)
    dest = _fix_dest(fix_out, force) if fix_out else None
    src = resolve_source(source, source_opts(checkpoint, weights, input_size, num_classes, labels, mean, std,
                                             crop_pct, require_deploy=False))
    report = lint_model(src.model, targets)
    if fix_out is not None:
        report["fix"] = _run_fix(src.model, report, targets, dest, not no_latency)
        final = report["fix"]["after_report"]["summary"]
    else:
        final = report["summary"]
    _print(report, as_json)
    if not final["clean"]:
        raise SystemExit(1)


def _fix_dest(out: Path, force: bool) -> Path:
    """OUT.pt2 as given, or a folder OUT that receives <name>.pt2; refuse to overwrite without --force."""
    from edge_sdk.errors import UsageError
    if out.suffix == ".pt2":
        if out.exists() and not force:
            raise UsageError(f"{out} exists; pass --force to replace it")
        return out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--fix {out}: not a folder (give a folder or a .pt2 path)")
    return out


def _run_fix(model: Any, before: dict[str, Any], targets: tuple[str, ...], dest: Path,
             measure: bool) -> dict[str, Any]:
    from edge_sdk.bundle import atomic_write
    from edge_sdk.converters.lint import compare, lint_model
    from edge_sdk.converters.lint.fix import fix_model, save_pt2
    from edge_sdk.errors import UsageError
    result = fix_model(model)
    after = lint_model(result.model, targets)
    b, a = dict(before["summary"]), dict(after["summary"])
    if measure:  # interleaved before/after timing: the ratio holds on a busy machine
        lb, la = compare.latency_pair(model, result.model)
        b.update(lb)
        a.update(la)
    rows = compare.table(b, a)
    path = dest if dest.suffix == ".pt2" else dest / f"{result.model.name}.pt2"
    if path.exists() and dest.suffix != ".pt2" and not _forced():
        raise UsageError(f"{path} exists; pass --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True) if dest.suffix == ".pt2" else dest.mkdir(parents=True,
                                                                                            exist_ok=True)
    deploy_given = bool(getattr(model, "source", {}).get("deploy_given", True))
    save_pt2(result, path, deploy_given)
    out = {"written": str(path), **result.to_dict(), "before_after": rows, "after_report": after,
           "deploy_in_file": deploy_given}
    atomic_write(path.with_suffix(".lint.json"), json.dumps(out, indent=2, default=str))
    atomic_write(path.with_suffix(".lint.md"), compare.markdown(rows) + "\n")
    return out


def _forced() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.params.get("force"))


def _print(report: dict[str, Any], as_json: bool) -> None:
    from edge_sdk.output import console, print_json, print_table
    if as_json:
        print_json(report)
        return
    for name, r in report["targets"].items():
        rows = [(f["op"], _where(f["where"]), f["reason"][:110], f"rule {f['edge_rule']}",
                 ", ".join(f["fix"]) or "report only") for f in r.get("findings", [])]
        print_table(f"{name}: {_headline(name, r)}", ["op", "where", "why", "edge rule", "--fix"], rows[:60])
        if len(rows) > 60:
            console.print(f"  ... {len(rows) - 60} more (use --json)")
    s = report["summary"]
    console.print(_summary_line(s))
    if "fix" in report:
        fx = report["fix"]
        print_table("--fix: before / after", ["metric", "before", "after"],
                    [(r["metric"], _cell(r["before"]), _cell(r["after"])) for r in fx["before_after"]])
        print_table("rewrites", ["rule", "sites", "parity (max err / max|out|)", "status"],
                    [(a["rule"], len(a["sites"]), f"{a['max_abs_ratio']:.1e}", "applied") for a in fx["applied"]] +
                    [(r["rule"], len(r.get("sites", [])), "", f"refused: {r['reason']}") for r in fx["refused"]])
        console.print(f"wrote {fx['written']} (+ .lint.json, .lint.md)")


def _headline(name: str, r: dict[str, Any]) -> str:
    if name == "executorch":
        return (f"{r['subgraphs']} XNNPACK subgraph(s), {r['outside_ops']} of {r['ops']} ops outside, "
                f"{r['delegated_share_macs']:.1%} of MACs delegated")
    if name == "tflite":
        if not r.get("convertible"):
            return "does not convert"
        return (f"{r['ops']} ops, TRANSPOSE {r['transpose_count']} ({r['internal_transpose_count']} internal), "
                f"GPU {'ok' if r['gpu_compatible'] else 'no'}, NNAPI {'ok' if r['nnapi_compatible'] else 'no'}")
    if not r.get("convertible", True):
        return "does not convert"
    return f"Neural Engine ready: {r.get('ane_ready')}"


def _where(w: dict[str, Any]) -> str:
    loc = f"{Path(w['file']).name}:{w['line']}" if w.get("file") else ""
    return " ".join(x for x in (w.get("module") or "", loc) if x) or "-"


def _summary_line(s: dict[str, Any]) -> str:
    state = "clean" if s["clean"] else f"{s['findings']} finding(s)"
    fixes = ", ".join(f"{k} ({v})" for k, v in s["fixable_by"].items()) or "none"
    return f"{state}; --fix can apply: {fixes}; report only: {s['not_fixable']}"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return "n/a" if v is None else str(v)


commands = [lint_cmd]
