"""`edge-sdk convert MODEL|CHECKPOINT --target ...`: zoo model or checkpoint -> deployable bundle(s) with parity.

Every choice (--target, --precision, --backend, --deployment-target), every default and the help table come from
the target table (edge_sdk/converters/targets.py + each Target's class attributes), never from lists written here,
so adding a target is one module plus one line there. The table is read only when `convert` runs or its --help is
shown: `edge-sdk --help` and the other commands never import the converters (or torch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _targets() -> dict:
    from edge_sdk.converters.targets import load_targets
    return load_targets()


def _choices(kind: str) -> list[str]:
    """Every value of one option over the table, in table order (duplicates removed)."""
    values: dict[str, None] = {}
    for t in _targets().values():
        names = {"target": (t.name,), "precision": t.precisions, "backend": t.backends,
                 "deployment-target": t.deployment_targets}[kind]
        values.update(dict.fromkeys(names))
    return list(values) + (["all"] if kind == "target" else [])


def _target_table() -> str:
    """Help text: per target its file, description, backends with precisions (default first), deployment targets."""
    try:
        targets = _targets()
    except Exception as exc:  # noqa: BLE001 - help must render even if a toolchain import breaks
        return f"(targets unavailable here: {type(exc).__name__}: {exc}; pip install 'edge-sdk[convert]')"
    lines = ["\b", "Targets (precisions: default first):"]
    for t in targets.values():
        lines.append(f"  {t.name:<11} {t.suffix:<11} {t.description}")
        for backend in t.backends:
            lines.append(f"  {'':<11} --backend {backend:<8} {', '.join(t.precisions_for(backend))}")
        if t.deployment_targets:
            where = f" (--backend {', '.join(t.deployment_backends)})" if t.deployment_backends else ""
            lines.append(f"  {'':<11} --deployment-target {', '.join(t.deployment_targets)}{where}, "
                         f"default {t.default_deployment_target}")
    return "\n".join(lines)


class _TableChoice(click.ParamType):
    """A choice read from the target table when used, with did-you-mean on typos (`--precision fp61`).

    --backend and --deployment-target are checked by the chosen target instead (Target.check_options), which
    names what THAT target supports."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = kind

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from edge_sdk.errors import unknown
        names = _choices(self.kind)
        if value not in names:
            raise unknown(self.kind, value, names)
        return value


def _option_help() -> dict[str, str]:
    return {"target": f"One of: {', '.join(_choices('target'))}.",
            "precision": f"One of: {', '.join(_choices('precision'))} (default: the target's first, see below).",
            "backend": f"One of: {', '.join(_choices('backend'))} (default: the target's first).",
            "deployment_target": f"Minimum iOS: {', '.join(_choices('deployment-target'))} (targets that use one; "
                                 "default below)."}


def _help() -> str:
    return "\n".join([
        "Convert MODEL into a bundle per target. MODEL is a zoo name, an edge-sdk checkpoint, a torch.export "
        "program (model.pt2) or your own code (path/to/file.py:factory or package.module:factory returning an "
        "nn.Module, with --weights and --input-size); --fix applies edge-sdk lint's parity-checked rewrites first.",
        "",
        "Each bundle is a folder with the model file, manifest.json, labels.txt and reference.npz. Parity against "
        "PyTorch is measured on the new bundle through the runtime harness and stored in the manifest; the command "
        "exits 1 when a bundle misses its parity thresholds (the bundle is still written, for inspection). "
        "Unsupported option combinations are rejected before any work, with what the target supports. Options "
        "left out take the target's defaults, the same as the library's ConvertOptions().",
        "",
        _target_table(),
        "",
        "\b",
        "Example:",
        "  edge-sdk convert levit_128s --target executorch -o bundles/",
        "  edge-sdk convert levit_128s --target executorch --precision int8 --calib data/val",
        "  edge-sdk convert levit_128s --target executorch --backend coreml --precision fp16",
        "  edge-sdk convert efficientnet_lite0 --pretrained --target all",
        "  edge-sdk convert runs/exp1/best.pt --target all -o bundles/ --force",
        "  edge-sdk convert exported.pt2 --target executorch --fix --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225",
        "  edge-sdk convert my_model.py:build --weights model.safetensors --input-size 224 --num-classes 10 \\",
        "      --labels labels.txt --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --target all --fix",
    ])


class _LazyHelpCommand(click.Command):
    """Builds the help text (table and option choices) only when --help is asked, so listing commands stays fast."""

    def get_help(self, ctx: click.Context) -> str:
        self.help = _help()
        try:
            helps = _option_help()
        except Exception:  # noqa: BLE001 - the table above already says why
            helps = {}
        for param in self.params:
            if param.name in helps:
                param.help = helps[param.name]
        return super().get_help(ctx)


from edge_sdk.commands.lint import byom_options, is_byom, resolve_for_convert  # noqa: E402 (issue 11 sources)


@click.command("convert", cls=_LazyHelpCommand, short_help="Convert a zoo model or checkpoint into deployable bundles.")
@click.argument("model")
@click.option("--target", "-t", required=True, type=_TableChoice("target"), help="A target of the table, or all.")
@click.option("--precision", "-p", type=_TableChoice("precision"), default=None,
              help="Target precision (default: the target's first).")
@click.option("--backend", default=None, help="Backend (default: the target's first).")
@click.option("--input-size", type=click.IntRange(32, 2048), default=None, help="Override the deploy input size.")
@click.option("--nhwc", is_flag=True, help="NHWC input layout (TFLite, for Android camera pipelines).")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of calibration images (int8/mixed); default: built-in generated images.")
@click.option("--calib-count", type=click.IntRange(1, 10000), default=32, show_default=True,
              help="Number of calibration images.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path), default=None,
              help="Text file with one class label per line (default: the model's, else class_0..).")
@click.option("--deployment-target", default=None,
              help="Minimum iOS, for targets that use one (default: the target's).")
@click.option("--num-classes", type=click.IntRange(1), default=None,
              help="Classifier size for a zoo name (default: from the checkpoint/labels, else 1000).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Weights for MODEL.")
@click.option("--pretrained", is_flag=True,
              help="Load MODEL's published ImageNet weights (edge-sdk info MODEL lists them; offline-safe).")
@click.option("--weights", default=None, metavar="FILE|hf-hub:REPO",
              help="Published-layout weights for MODEL (.safetensors/.pth/.bin or hf-hub:timm/<name>.<tag>); "
                   "implies --pretrained.")
@click.option("--output", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("bundles"),
              show_default=True, help="Folder that receives the bundles.")
@click.option("--force", is_flag=True, help="Replace existing bundles (atomically).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@byom_options
def convert_cmd(model: str, target: str, precision: str | None, backend: str | None, input_size: int | None,
                nhwc: bool, calib_dir: Path | None, calib_count: int, labels_file: Path | None,
                deployment_target: str | None, num_classes: int | None, checkpoint: Path | None, pretrained: bool,
                weights: str | None, out_dir: Path, force: bool, as_json: bool, mean: str | None, std: str | None,
                crop_pct: float | None, fix: bool) -> None:
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert, read_labels
    from edge_sdk.errors import EdgeError
    labels = read_labels(labels_file) if labels_file else None
    if fix or is_byom(model):  # .pt2 / file.py:factory / --fix: resolved (and fixed) here, handed over as a module
        model = resolve_for_convert(model, fix, checkpoint, weights, input_size, num_classes, labels, mean, std,
                                    crop_pct, pretrained, show_progress=not as_json)
        input_size = num_classes = checkpoint = weights = None
        pretrained = False
    if labels and num_classes is None and checkpoint is None and isinstance(model, str) and not Path(model).is_file():
        num_classes = len(labels)
    opts = ConvertOptions(precision=precision, backend=backend, nhwc=nhwc, input_size=input_size,
                          calib_dir=calib_dir, calib_count=calib_count, deployment_target=deployment_target)
    results = convert(model, target, opts, out_dir, force=force, checkpoint=checkpoint, labels=labels,
                      num_classes=num_classes, show_progress=not as_json,
                      pretrained=weights or pretrained)
    _print(results, as_json)
    failed = [r for r in results if r.parity.get("status") == "failed"]
    if failed:
        raise EdgeError("parity failed for " + "; ".join(f"{r.bundle.name}: {', '.join(r.parity['failures'])}"
                                                         for r in failed))


def _print(results: list[Any], as_json: bool) -> None:
    from edge_sdk.output import print_json, print_table
    from edge_sdk.parity import summary
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    print_table("converted", ["bundle", "file", "size", "delegation / report", "parity"],
                [(str(r.bundle), r.file, f"{r.size_bytes / 1e6:.2f} MB", r.summary,
                  summary(r.parity) + (f": {r.parity.get('reason')}" if r.parity.get("status") == "not_run" else ""))
                 for r in results])


commands = [convert_cmd]
