"""`edge-sdk quickstart`: the zoo, one model converted to every target, validated and benchmarked (`make demo`)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("quickstart", short_help="Run the whole flow once: zoo, convert to every target, validate, bench.")
@click.option("--model", default="levit_128s", show_default=True, help="Zoo model to convert and benchmark.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("demo-out"), show_default=True,
              help="Folder that receives the bundles (replaced on each run).")
@click.option("--budget-ms", type=click.FloatRange(0, min_open=True), default=50.0, show_default=True,
              help="Per-frame latency budget the benchmark gates on.")
def quickstart_cmd(model: str, out: Path, budget_ms: float) -> None:
    """Run every standard zoo model once, convert MODEL to ExecuTorch (fp32, int8), TFLite (fp32, dynamic int8)
    and Core ML (fp16), re-validate each bundle from the bundle alone, and benchmark the runnable ones.

    Exits 1 when a parity or latency threshold is missed. This is what `make demo` runs.

    \b
    Example:
      edge-sdk quickstart
      edge-sdk quickstart --model mobilevitv2_050 --out /tmp/qs --budget-ms 30
    """
    from edge_sdk.errors import EdgeError
    from edge_sdk.models import list_models
    if model not in list_models():
        from edge_sdk.errors import unknown
        raise unknown("model", model, list_models())
    from edge_sdk.quickstart import run
    if not run(model, out, budget_ms):
        raise EdgeError("quickstart: a parity or latency threshold was missed (see the tables above)")


commands = [quickstart_cmd]
