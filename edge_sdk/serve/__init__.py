"""`edge-sdk serve`: any phone's browser becomes a benchmark device for a .tflite bundle, no app install.

The camera page (apps/web) runs the bundle with LiteRT.js on the phone and posts its per-frame timings back; this
module serves it, shows a live line per device and, with `frames`, ends after N frames with a report in the
`edge-sdk bench --json` schema (exit 1 when p90 is over the budget).
"""
from __future__ import annotations

import ipaddress
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk.errors import EdgeError, UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    https: bool = False
    budget_ms: float = 50.0
    frames: int | None = None
    report: Path | None = None
    timeout_s: float | None = None
    qr: bool = True


def _url_host(host: str) -> str:
    """The address to print and put in the certificate: the LAN address when bound to every interface."""
    from edge_sdk.serve.tls import lan_address
    if host in ("0.0.0.0", "::", ""):
        return lan_address()
    return host


def _check(opts: ServeOptions) -> None:
    if opts.frames is not None and opts.frames < 1:
        raise UsageError(f"--frames must be >= 1, got {opts.frames}")
    if not 0 <= opts.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {opts.port}")
    if opts.report is not None and opts.report.is_dir():
        raise UsageError(f"--report {opts.report} is a directory; give a file name such as out.json")
    if opts.timeout_s is not None and opts.timeout_s <= 0:
        raise UsageError("--timeout must be > 0 seconds")


def _print_banner(url: str, opts: ServeOptions, bundle_name: str, fingerprint: str | None) -> None:
    from edge_sdk.output import err_console
    err_console.print(f"serving {bundle_name} at [bold]{url}[/bold]  (budget {opts.budget_ms:g} ms; Ctrl-C stops)",
                      markup=True, highlight=False, soft_wrap=True)
    print(f"url: {url}", file=sys.stderr, flush=True)
    if fingerprint:
        err_console.print(f"self-signed certificate, SHA-256 {fingerprint}: accept it once on the phone",
                          highlight=False, soft_wrap=True)
    if opts.host in LOOPBACK:
        err_console.print("bound to loopback: only this machine can open it (a phone needs --host 0.0.0.0 --https)",
                          highlight=False, soft_wrap=True)
    elif not opts.https:
        err_console.print("phones open the camera only over HTTPS: add --https", highlight=False, soft_wrap=True)
    if opts.qr and opts.host not in LOOPBACK:
        import segno
        segno.make(url, error="l").terminal(out=sys.stderr, compact=True)


def _watch(collector: Any, opts: ServeOptions) -> None:
    """Show a live line per device until N frames arrived (or Ctrl-C / timeout)."""
    from edge_sdk.output import err_console
    deadline = time.monotonic() + opts.timeout_s if opts.timeout_s else None
    live = None
    if err_console.is_terminal:
        from rich.live import Live
        from rich.text import Text
        live = Live(Text("waiting for a browser to open the page…"), console=err_console, refresh_per_second=4,
                    transient=False)
        live.start()
    last_print = 0.0
    try:
        while not collector.done.is_set():
            if deadline and time.monotonic() > deadline:
                got = max((len(s.frames) for s in collector.sessions.values()), default=0)
                raise EdgeError(f"timed out after {opts.timeout_s:g} s with {got} of {opts.frames} frames")
            if collector.changed.wait(0.25):
                collector.changed.clear()
                if live is not None:
                    from rich.text import Text
                    live.update(Text("\n".join(collector.lines())))
                elif time.monotonic() - last_print > 2.0:
                    last_print = time.monotonic()
                    for line in collector.lines():
                        print(line, file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()


def serve(bundle_path: str | Path, opts: ServeOptions) -> list[dict[str, Any]]:
    """Serve until done; returns the report rows (bench schema). Raises EdgeError when a p90 is over budget."""
    from edge_sdk import bench
    from edge_sdk.output import err_console
    from edge_sdk.serve.report import Collector
    from edge_sdk.serve.server import make_server, serve_in_thread
    from edge_sdk.serve.site import open_web_bundle, site_files

    _check(opts)
    bundle = open_web_bundle(bundle_path)
    files = site_files(bundle)
    manifest = bundle.manifest
    shown = _url_host(opts.host)
    tls, fingerprint = None, None
    if opts.https:
        from edge_sdk.serve.tls import certificate
        try:
            ipaddress.ip_address(shown)
        except ValueError:
            shown = "127.0.0.1" if shown == "localhost" else shown
        cert, key, fingerprint = certificate(shown)
        tls = (cert, key)
    collector = Collector(opts.budget_ms, opts.frames)
    config = {"budget_ms": opts.budget_ms, "report": True, "frames": opts.frames}
    try:
        srv = make_server(opts.host, opts.port, files, config, collector, tls)
    except OSError as exc:
        raise EdgeError(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror or exc}") from None
    port = srv.server_address[1]
    host_part = f"[{shown}]" if ":" in shown else shown
    url = f"{'https' if opts.https else 'http'}://{host_part}:{port}/"
    _print_banner(url, opts, bundle.path.name, fingerprint)
    serve_in_thread(srv)
    try:
        _watch(collector, opts)
    finally:
        srv.shutdown()
        srv.server_close()
    for line in collector.lines():
        print(line, flush=True)
    results = collector.results(bundle.path.name, manifest)
    if opts.report is not None:
        bench.write_json(opts.report, results, {"budget_ms": opts.budget_ms, "device": "browser", "url": url,
                                                "frames": opts.frames})
        err_console.print(f"wrote {opts.report}", highlight=False)
    bad = bench.over_budget(results)
    if opts.frames and not results:
        raise EdgeError("stopped before any browser posted a frame")
    if bad:
        raise EdgeError(f"{len(bad)} of {len(results)} devices exceed the {opts.budget_ms:g} ms p90 budget: "
                        + ", ".join(f"{r['device']} p90 {r['p90_ms']:.2f} ms" for r in bad))
    return results
