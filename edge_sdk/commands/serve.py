"""`edge-sdk serve BUNDLE`: the camera page for a .tflite bundle, so a phone's browser measures its own latency."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 lets phones on the network connect (nothing else is ever served).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port (0 = any free port).")
@click.option("--https", is_flag=True, help="Self-signed certificate for the LAN address (phones need HTTPS for "
              "the camera).")
@click.option("--budget-ms", default=50.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Per-frame latency budget; judged on the p90 of the inference time.")
@click.option("--frames", type=int, default=None, help="End after a device posted N frames.")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Write the result as JSON in the `edge-sdk bench --json` schema.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Give up after S seconds (with --frames).")
@click.option("--no-qr", is_flag=True, help="Do not print the URL as a QR code.")
def serve_cmd(bundle: Path, host: str, port: int, https: bool, budget_ms: float, frames: int | None,
              report: Path | None, timeout_s: float | None, no_qr: bool) -> None:
    """Serve the camera page and BUNDLE (a LiteRT .tflite bundle) to a browser; show each device's latency live.

    The page opens the camera, runs the model with LiteRT.js (wasm, or WebGPU when switched on) and posts its
    per-frame timings here. With --frames N the command ends after N frames, prints the verdict, writes --report and
    exits 1 when p90 is over --budget-ms.

    \b
    Example:
      edge-sdk convert levit_128s --target tflite --nhwc -o bundles/
      edge-sdk serve bundles/levit_128s-tflite-litert-fp32-nhwc                  # http://127.0.0.1:8000/ here
      edge-sdk serve bundles/levit_128s-tflite-litert-fp32-nhwc --host 0.0.0.0 --https   # scan the QR code
      edge-sdk serve BUNDLE --host 0.0.0.0 --https --frames 300 --report phone.json
    """
    from edge_sdk.serve import ServeOptions, serve
    serve(bundle, ServeOptions(host=host, port=port, https=https, budget_ms=budget_ms, frames=frames, report=report,
                               timeout_s=timeout_s, qr=not no_qr))


commands = [serve_cmd]
