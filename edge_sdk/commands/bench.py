"""`edge-sdk bench BUNDLE...`: latency against a per-frame budget, here (fresh process per run) or on a phone."""
from __future__ import annotations

from pathlib import Path

import click


def _parse_threads(value: str) -> list[int]:
    from edge_sdk.errors import UsageError
    try:
        threads = [int(t) for t in value.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--threads takes a comma-separated list of integers, e.g. 1,2; got {value!r}") from None
    if not threads or any(t < 1 for t in threads):
        raise UsageError(f"--threads needs positive integers, got {value!r}")
    return threads


def _backend(device: str):  # noqa: ANN202
    """host -> edge_sdk.bench.run_host; adb / adb:SERIAL -> edge_sdk.android.run (the two bench backends)."""
    from edge_sdk.errors import UsageError
    name = device.split(":", 1)[0]
    if name == "host" and device == "host":
        from edge_sdk.bench import run_host
        return run_host
    if name == "adb":
        from edge_sdk.android import run
        return run
    raise UsageError(f"--device must be host, adb or adb:SERIAL; got {device!r}")


@click.command("bench")
@click.argument("bundles", nargs=-1, required=True)
@click.option("--threads", default="1", show_default=True, help="Comma-separated thread counts, e.g. 1,2.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0), help="Untimed runs first.")
@click.option("--runs", default=30, show_default=True, type=click.IntRange(1), help="Timed runs.")
@click.option("--budget-ms", default=50.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Per-frame latency budget; exit 1 when any p90 exceeds it.")
@click.option("--e2e", is_flag=True, help="Time decode + preprocess + run of real JPEG frames, not just the model.")
@click.option("--json", "json_file", type=click.Path(path_type=Path), help="Write all results as JSON.")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path), help="Write all results as CSV.")
@click.option("--html", "html_file", type=click.Path(path_type=Path),
              help="Write one self-contained HTML report (table + plots, machine, versions).")
@click.option("--device", default="host", show_default=True,
              help="host, or adb / adb:SERIAL to run on an Android phone (needs --runner).")
@click.option("--runner", type=click.Path(path_type=Path), help="Android benchmark binary: LiteRT benchmark_model "
              "or ExecuTorch executor_runner (built for the phone's ABI).")
@click.option("--runner-kind", type=click.Choice(["benchmark_model", "executor_runner"]), default=None,
              help="Say which runner --runner is when its file name does not.")
@click.option("--input-size", type=click.IntRange(32, 2048), default=None,
              help="Input size for torch:MODEL / torch:file.py:factory sources.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Weights for torch:file.py:factory sources (.safetensors or a weights-only state dict).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_cmd(bundles: tuple[str, ...], threads: str, warmup: int, runs: int, budget_ms: float, e2e: bool,
              json_file: Path | None, csv_file: Path | None, device: str, runner: Path | None,
              runner_kind: str | None, quiet: bool, html_file: Path | None = None, input_size: int | None = None,
              weights: Path | None = None) -> None:
    """Measure load time, first inference, p50/p90/p99/mean/std latency, throughput and peak RSS of BUNDLES.

    Each bundle x thread count runs in its own fresh process (ExecuTorch's thread pool can only be sized before
    the first load). A BUNDLE may also be `torch:MODEL` for the PyTorch eager reference of a zoo model, or
    `torch:model.pt2` / `torch:my_model.py:factory` for your own model in PyTorch (a .pt2 at its example input's
    size; a factory with --weights and --input-size), beside the bundles `edge-sdk convert ... --fix` made of it.
    Exit code 1 when any p90 exceeds --budget-ms (or a run failed).

    \b
    Example:
      edge-sdk bench bundles/levit_128s-executorch-xnnpack-fp32 bundles/levit_128s-tflite-litert-fp32 \\
          --threads 1,2 --budget-ms 50 --json bench.json --csv bench.csv
      edge-sdk bench bundles/*-fp32 bundles/*-int8 --html report.html
      edge-sdk bench bundles/levit_128s-tflite-litert-fp32 --e2e
      edge-sdk bench torch:exported.pt2 bundles/exported-executorch-xnnpack-fp32
      edge-sdk bench torch:my_model.py:build --weights model.safetensors --input-size 224 \\
          bundles/build-executorch-xnnpack-fp32
      edge-sdk bench bundles/levit_128s-tflite-litert-fp32 --device adb:R58M12345 --runner ./benchmark_model
    """
    from edge_sdk import bench
    from edge_sdk.errors import EdgeError
    from edge_sdk.output import err_console
    req = bench.BenchRequest(tuple(_parse_threads(threads)), warmup, runs, budget_ms, e2e, not quiet, runner,
                             runner_kind, input_size, str(weights) if weights else None)
    results = _backend(device)(bundles, device, req)
    bench.print_comparison(results, budget_ms)
    if json_file:
        bench.write_json(json_file, results, {"budget_ms": budget_ms, "device": device})
        err_console.print(f"wrote {json_file}")
    if csv_file:
        bench.write_csv(csv_file, results)
        err_console.print(f"wrote {csv_file}")
    if html_file:
        from edge_sdk.report_html import write_html_report
        write_html_report(html_file, results, bundles, budget_ms, peaks=None if device == "host" else {})
        err_console.print(f"wrote {html_file}")
    bad = bench.over_budget(results)
    if bad:
        names = ", ".join(f"{r.get('name')}@{r.get('threads')}t" for r in bad)
        raise EdgeError(f"{len(bad)} of {len(results)} measurements failed or exceed the {budget_ms:g} ms p90 "
                        f"budget: {names}")


commands = [bench_cmd]
