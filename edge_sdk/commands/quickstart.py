"""`edge-sdk quickstart`: the zoo, one model converted to every target, validated and benchmarked (`make demo`)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("quickstart", short_help="Run the whole flow once: zoo, convert to every target, validate, bench.")
@click.option("--model", "models", multiple=True, default=("efficientnet_lite0", "levit_128s"), show_default=True,
              help="Zoo model(s) to convert and benchmark (repeat the option); efficientnet_lite0 uses its "
                   "pretrained ImageNet weights.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Folder that receives the bundles (replaced on each run).")
@click.option("--budget-ms", type=click.FloatRange(0, min_open=True), default=50.0, show_default=True,
              help="Per-frame latency budget the benchmark gates on.")
@click.option("--html", type=click.Path(path_type=Path), default=None,
              help="Where to write the HTML benchmark report (default: OUT/report.html).")
def quickstart_cmd(models: tuple[str, ...], out: Path, budget_ms: float, html: Path | None) -> None:
    """Run every standard zoo model once, convert each MODEL to ExecuTorch (fp32, int8), TFLite (fp32, dynamic int8)
    and Core ML (fp16), re-validate each bundle from the bundle alone, and benchmark the runnable ones.

    Exits 1 when a parity or latency threshold is missed. This is what `make demo` runs.

    \b
    Example:
      edge-sdk quickstart
      edge-sdk quickstart --model mobilevitv2_050 --model levit_128s --out /tmp/qs --budget-ms 30
    """
    from edge_sdk.errors import EdgeError
    from edge_sdk.models import list_models
    for model in models:
        if model not in list_models():
            from edge_sdk.errors import unknown
            raise unknown("model", model, list_models())
    from edge_sdk.quickstart import run
    if not run(tuple(models), out, budget_ms, html or out / "report.html"):
        raise EdgeError("quickstart: a parity or latency threshold was missed (see the tables above)")


commands = [quickstart_cmd]
