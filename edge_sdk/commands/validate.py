"""`edge-sdk validate BUNDLE`: re-run parity from the bundle alone (+ accuracy on a labelled folder)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("validate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Labelled ImageFolder (class folders named like labels.txt) to measure accuracy on.")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Fail when top-1 accuracy on --images is below this fraction.")
@click.option("--max-abs-ratio", type=click.FloatRange(0, None), default=None,
              help="fp32 limit: max-abs error / max|logit| (default 1e-4).")
@click.option("--min-top1", type=click.FloatRange(0, 1), default=None,
              help="Lossy precisions: minimum top-1 agreement on decisive images (default 0.98).")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), default=None,
              help="Lossy precisions: minimum cosine similarity (fp16 0.999, int8/mixed 0.98).")
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="CPU threads for the runtime.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate_cmd(bundle: Path, images: Path | None, min_accuracy: float | None, max_abs_ratio: float | None,
                 min_top1: float | None, min_cosine: float | None, threads: int | None, as_json: bool) -> None:
    """Check BUNDLE: integrity (schema, sha256), parity with PyTorch from its reference.npz, and accuracy.

    Exits 1 when a threshold is missed or the bundle is damaged, 0 otherwise (also when parity cannot run on
    this machine, e.g. Core ML on Linux: the result then says not_run and why).

    \b
    Example:
      edge-sdk validate bundles/levit_128s-executorch-xnnpack-fp32
      edge-sdk validate bundles/levit_128s-executorch-xnnpack-int8 --images data/val --min-accuracy 0.7 --json
    """
    from edge_sdk.errors import EdgeError
    from edge_sdk.output import print_json
    from edge_sdk.validate import validate_bundle
    limits = {k: v for k, v in (("max_abs_ratio", max_abs_ratio), ("min_top1", min_top1),
                                ("min_cosine", min_cosine)) if v is not None}
    report = validate_bundle(bundle, images, limits, min_accuracy, threads)
    if as_json:
        print_json(report)
    else:
        _print(report)
    if not report["passed"]:
        raise EdgeError(f"validation failed: {'; '.join(report['failures'])}")


def _print(report: dict) -> None:
    from edge_sdk.parity import summary
    from edge_sdk.output import print_table
    p = report["parity"]
    rows = [("bundle", report["bundle"]), ("target", f"{report['target']} / {report['backend']} / "
                                                     f"{report['precision']}"),
            ("parity", summary(p) + (f": {p.get('reason')}" if p.get("status") == "not_run" else ""))]
    for name in ("images", "random"):
        m = p.get(name)
        if m:
            rows.append((f"  {name} ({m['count']})", f"max-abs {m['max_abs']:.3g} ({m['max_abs_ratio']:.1e} x max|logit|),"
                                                      f" cosine {m['cosine_min']:.6f}, top-1 {m['top1_agreement']:.0%}"
                                                      f" ({m['decisive']} decisive)"))
    acc = report.get("accuracy")
    if acc:
        rows.append(("accuracy", f"top-1 {acc['top1']:.1%}, top-5 {acc['top5']:.1%} on {acc['images']} images"
                     if "top1" in acc else f"not_run: {acc.get('reason')}"))
    rows.append(("result", "passed" if report["passed"] else "FAILED"))
    print_table("validate", ["check", "result"], rows)


commands = [validate_cmd]
