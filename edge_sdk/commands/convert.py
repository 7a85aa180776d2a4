"""`edge-sdk convert MODEL|CHECKPOINT --target ...`: zoo model or checkpoint -> deployable bundle(s) with parity.

Target choices, precision choices and the help table come from the registered targets (converters/base.py), not
from lists written here. Only the target modules are imported for `--help` (they import torch lazily... mostly);
the heavy toolchains load when a conversion runs.
"""
from __future__ import annotations

from pathlib import Path

import click

from edge_sdk.errors import UsageError

KNOWN_PRECISIONS = ("fp32", "fp16", "int8", "mixed", "dynamic_int8", "palette6", "palette4")


def _targets() -> dict:
    from edge_sdk.converters.base import load_targets
    return load_targets()


def _target_table() -> str:
    """Help text: one line per target with its backends and precisions (default first)."""
    try:
        targets = _targets()
    except Exception:  # help must render even if a toolchain import breaks
        return ""
    lines = ["\b", "Targets (precisions: default first):"]
    for t in targets.values():
        per_backend = getattr(t, "backend_precisions", {}) or {b: t.precisions for b in t.backends}
        for i, (backend, precisions) in enumerate(per_backend.items()):
            lines.append(f"  {t.name if i == 0 else '':<11} --backend {backend:<8} {', '.join(precisions)}")
    return "\n".join(lines)


class _TargetChoice(click.ParamType):
    """Lazy choice so `--help` of other commands never imports the converters; did-you-mean on typos."""

    name = "target"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from edge_sdk.errors import unknown
        names = list(_targets()) + ["all"]
        if value not in names:
            raise unknown("target", value, names)
        return value


def _help() -> str:
    return "\n".join([
        "Convert MODEL (a zoo name) or CHECKPOINT (an edge-sdk weights file) into a bundle per target.",
        "",
        "Each bundle is a folder with the model file, manifest.json, labels.txt and reference.npz. Parity against "
        "PyTorch is measured on the new bundle through the runtime harness and stored in the manifest; the command "
        "exits 1 when a bundle misses its parity thresholds (the bundle is still written, for inspection). "
        "Unsupported option combinations are rejected before any work, with what the target supports.",
        "",
        _target_table(),
        "",
        "\b",
        "Example:",
        "  edge-sdk convert levit_128s --target executorch -o bundles/",
        "  edge-sdk convert levit_128s --target executorch --precision int8 --calib data/val",
        "  edge-sdk convert levit_128s --target executorch --backend coreml --precision fp16",
        "  edge-sdk convert runs/exp1/best.pt --target all -o bundles/ --force",
    ])


class _LazyHelpCommand(click.Command):
    """Builds the help text (with the target table) only when --help is asked, so listing commands stays fast."""

    def get_help(self, ctx: click.Context) -> str:
        self.help = _help()
        return super().get_help(ctx)


@click.command("convert", cls=_LazyHelpCommand, short_help="Convert a zoo model or checkpoint into deployable bundles.")
@click.argument("model")
@click.option("--target", "-t", required=True, type=_TargetChoice(), help="executorch, coreml, tflite or all.")
@click.option("--precision", "-p", default=None, help="Target precision (default: the target's first one).")
@click.option("--backend", default=None, help="ExecuTorch delegate: xnnpack (default) or coreml.")
@click.option("--input-size", type=click.IntRange(32, 2048), default=None, help="Override the deploy input size.")
@click.option("--nhwc", is_flag=True, help="NHWC input layout (TFLite, for Android camera pipelines).")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of calibration images (int8/mixed); default: built-in generated images.")
@click.option("--calib-count", type=click.IntRange(1, 10000), default=32, show_default=True,
              help="Number of calibration images.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path), default=None,
              help="Text file with one class label per line (default: the model's, else class_0..).")
@click.option("--deployment-target", type=click.Choice(["iOS16", "iOS17", "iOS18"]), default=None,
              help="Minimum iOS (Core ML and the ExecuTorch Core ML delegate); default iOS17.")
@click.option("--num-classes", type=click.IntRange(1), default=None,
              help="Classifier size for a zoo name (default: from the checkpoint/labels, else 1000).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Weights for MODEL.")
@click.option("--output", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("bundles"),
              show_default=True, help="Folder that receives the bundles.")
@click.option("--force", is_flag=True, help="Replace existing bundles (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def convert_cmd(model: str, target: str, precision: str | None, backend: str | None, input_size: int | None,
                nhwc: bool, calib_dir: Path | None, calib_count: int, labels_file: Path | None,
                deployment_target: str | None, num_classes: int | None, checkpoint: Path | None, out_dir: Path,
                force: bool, as_json: bool) -> None:
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert, read_labels
    from edge_sdk.errors import EdgeError
    if precision is not None and precision not in KNOWN_PRECISIONS:
        from edge_sdk.errors import unknown
        raise unknown("precision", precision, KNOWN_PRECISIONS)
    labels = read_labels(labels_file) if labels_file else None
    if labels and num_classes is None and checkpoint is None and not Path(model).is_file():
        num_classes = len(labels)
    opts = ConvertOptions(precision=precision or _default_precision(target), backend=backend, nhwc=nhwc,
                          input_size=input_size, calib_dir=calib_dir, calib_count=calib_count,
                          deployment_target=deployment_target)
    if target == "all" and precision is not None:
        raise UsageError("--target all uses each target's default precision; --precision needs a single --target")
    results = convert(model, target, opts, out_dir, force=force, checkpoint=checkpoint, labels=labels,
                      num_classes=num_classes, show_progress=not as_json)
    _print(results, as_json)
    failed = [r for r in results if r.parity.get("status") == "failed"]
    if failed:
        raise EdgeError("parity failed for " + "; ".join(f"{r.bundle.name}: {', '.join(r.parity['failures'])}"
                                                         for r in failed))


def _default_precision(target: str) -> str:
    if target == "all":
        return "fp32"  # placeholder; the pipeline picks each target's default
    return _targets()[target].default_precision()


def _delegation(report: dict) -> str:
    """One cell per target: ExecuTorch delegation, Core ML Neural Engine readiness, TFLite delegate compatibility."""
    if "delegated_subgraphs" in report:
        outside = report.get("non_delegated") or {}
        extra = f", outside: {', '.join(f'{k} x{v}' for k, v in outside.items())}" if outside else ""
        return f"{report['delegated_subgraphs']} subgraph(s), {report.get('delegated_ops', 0)} ops{extra}"
    if "ane_ready" in report:
        s = report.get("summary") or {}
        return f"ANE ready: {report['ane_ready']}, {s.get('ops', '?')} ops, {s.get('issues', '?')} issue(s)"
    if "gpu_compatible" in report:
        from edge_sdk.converters.tflite_report import summary
        return summary(report)
    return ""


def _print(results: list, as_json: bool) -> None:
    from edge_sdk.converters.parity import summary
    from edge_sdk.output import print_json, print_table
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    print_table("converted", ["bundle", "file", "size", "delegation / report", "parity"],
                [(str(r.bundle), r.file, f"{r.size_bytes / 1e6:.2f} MB", _delegation(r.report),
                  summary(r.parity) + (f": {r.parity.get('reason')}" if r.parity.get("status") == "not_run" else ""))
                 for r in results])


commands = [convert_cmd]
