"""`edge-sdk profile BUNDLE`: where the time goes, per op, module, block type and op class (edge_sdk/profile.py)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("profile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="CPU threads.")
@click.option("--top", "top_k", type=click.IntRange(1), default=15, show_default=True, help="Slowest ops to list.")
@click.option("--runs", type=click.IntRange(1), default=20, show_default=True, help="Timed runs.")
@click.option("--warmup", type=click.IntRange(0), default=3, show_default=True, help="Untimed runs first.")
@click.option("--no-peak", is_flag=True, help="Skip the GEMM peak (no %-of-peak column).")
@click.option("--rebuild-map", is_flag=True, help="Re-create the op -> module map instead of using the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole profile (every op) as JSON.")
def profile_cmd(bundle: Path, threads: int, top_k: int, runs: int, warmup: int, no_peak: bool, rebuild_map: bool,
                as_json: bool) -> None:
    """Profile BUNDLE op by op: the slowest ops with their share and the model module that produced each, time
    per stage and block type (stem, MV2, attention, FFN, head, ...) and achieved GMAC/s per op class against this
    machine's XNNPACK GEMM peak (measured once, cached).

    ExecuTorch .pte: ETDump + the devtools Inspector; the first profile of a bundle re-creates its lowering from
    the manifest to map XNNPACK kernels to modules (cached). TFLite: LiteRT's Python API has no per-op timer; the
    output says so, names the tool that has one, and gives latency, XNNPACK partitions and MACs per op type.
    Run it in a quiet process: it sizes the thread pool once, before loading.

    \b
    Example:
      edge-sdk profile bundles/levit_128s-executorch-xnnpack-fp32 --top 10
      edge-sdk profile bundles/levit_128s-executorch-xnnpack-int8 --threads 2 --json > profile.json
      edge-sdk profile bundles/levit_128s-tflite-litert-int8
    """
    from edge_sdk.output import print_json
    from edge_sdk.profile import profile_bundle
    result = profile_bundle(bundle, threads=threads, warmup=warmup, runs=runs, peak=not no_peak,
                            rebuild_map=rebuild_map)
    if isinstance(result, dict):
        if as_json:
            print_json(result)
        else:
            _print_tflite(result)
        return
    if as_json:
        print_json(result.to_dict(top_k))
        return
    _print_pte(result, top_k)


def _print_pte(p, top_k: int) -> None:  # noqa: ANN001 (edge_sdk.profile.Profile, imported lazily)
    from edge_sdk.output import console, print_table
    from edge_sdk.profile import iter_rows
    g = p.achieved_gmacs_per_s
    peak = f"{p.peak_gmacs_per_s:.1f} GMAC/s" if p.peak_gmacs_per_s else "not measured"
    pct = f" = {100 * g / p.peak_gmacs_per_s:.0f}% of peak" if g and p.peak_gmacs_per_s else ""
    console.print(f"{p.model} {p.runtime} {p.precision}, {p.threads} thread(s), {p.runs} runs: "
                  f"{p.execute_ms:.2f} ms per run (kernels {p.kernel_ms:.2f} ms), "
                  f"{(g or 0):.1f} GMAC/s{pct}; GEMM peak {peak}")
    rows = [[f"{o.ms:.3f}", f"{share:.1f}%", o.name, o.op, o.module + (" ~" if o.inferred_module else ""), o.block,
             f"{o.macs / 1e6:.1f}" if o.macs else "", f"{gm:.1f}" if gm else ""] for o, share, gm in p.top(top_k)]
    print_table(f"top {top_k} ops", ["ms", "share", "kernel / op", "aten op", "module", "block", "MMACs", "GMAC/s"],
                rows)
    cols = ["", "ms", "share", "MMACs", "GMAC/s", "% of peak", "ops"]
    print_table("by block type", ["block"] + cols[1:], iter_rows(p.groups("block")))
    print_table("by stage", ["stage"] + cols[1:], iter_rows(p.groups("stage")))
    print_table("by op class", ["op class"] + cols[1:], iter_rows(p.groups("op_class")))
    for note in p.notes:
        console.print(f"note: {note}")


def _print_tflite(r: dict) -> None:
    from edge_sdk.output import console, print_table
    console.print(f"{r['model']} litert {r['precision']}, {r['threads']} thread(s): {r['median_ms']:.2f} ms median "
                  f"over {r['runs']} runs")
    x = r["xnnpack"]
    outside = ", ".join(f"{k} x{v}" for k, v in x["outside_by_op"].items())
    console.print(f"XNNPACK: {x['partitions']} partition(s); {x['ops_outside']} of {x['ops']} ops run outside it"
                  + (f" ({outside}): each partition boundary is a hand-off to TFLite's own kernels" if outside else ""))
    console.print(f"not available: {r['not_available']}")
    print_table("ops by type (static)", ["op", "dtype", "count", "MMACs"],
                [[o["op"], o["dtype"], o["count"], f"{o['macs'] / 1e6:.1f}" if o["macs"] else ""] for o in r["ops"]])


commands = [profile_cmd]
