"""One self-contained HTML benchmark report (`edge-sdk bench ... --html report.html`).

Why one file with the plots inlined (matplotlib PNGs as base64 data URIs): it is attached to issues, mailed and
opened from CI artifacts, where a folder of images or a page that loads scripts from the network breaks. No
JavaScript, no external CSS, no fonts: it renders the same offline.

Contents: the results table (latency per bundle and thread count against the budget, p50/p90/p99, GMAC/s and % of
the machine's XNNPACK GEMM peak, model size), four plots (p90 vs budget, p50/p90/p99 spread, GMAC/s vs peak, model
size) and the machine and toolchain versions.
"""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from edge_sdk.bundle import atomic_write

PLOT_IDS = ("latency", "spread", "gmacs", "size")


def model_size_mb(source: str | Path) -> float | None:
    """Size of a bundle's model file (an .mlpackage folder counts all its files); None for torch:MODEL sources."""
    from edge_sdk.bundle import read_bundle
    if str(source).startswith("torch:"):
        return None
    try:
        path = read_bundle(source, verify=False).model_file
    except Exception:  # a result whose bundle vanished still gets a row
        return None
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return path.stat().st_size / 1e6


def _label(r: Mapping[str, Any]) -> str:
    name = str(r.get("name") or "?")
    return f"{name} @{r.get('threads', '?')}t"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(n_rows: int):  # noqa: ANN202
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(8.5, max(2.2, 0.42 * n_rows + 1.2)))


def plot_latency(rows: Sequence[Mapping[str, Any]], budget_ms: float | None) -> str:
    """p90 per bundle x threads as horizontal bars, green within the budget, red over it, the budget as a line."""
    fig, ax = _figure(len(rows))
    vals = [float(r.get("p90_ms") or 0) for r in rows]
    colors = ["#c0392b" if r.get("within_budget") is False else "#27ae60" for r in rows]
    ax.barh(range(len(rows)), vals, color=colors)
    if budget_ms:
        ax.axvline(budget_ms, color="#c0392b", linestyle="--", linewidth=1.2, label=f"budget {budget_ms:g} ms")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("p90 latency (ms)")
    ax.set_title("Latency per bundle and runtime against the budget")
    return _png(fig)


def plot_spread(rows: Sequence[Mapping[str, Any]]) -> str:
    """p50 as a dot, a line from p50 to p99 with a tick at p90: the tail each runtime shows."""
    fig, ax = _figure(len(rows))
    for i, r in enumerate(rows):
        p50, p90, p99 = (float(r.get(k) or 0) for k in ("p50_ms", "p90_ms", "p99_ms"))
        ax.plot([p50, p99], [i, i], color="#7f8c8d", linewidth=2)
        ax.plot([p50], [i], "o", color="#2c3e50", label="p50" if i == 0 else None)
        ax.plot([p90], [i], "|", color="#e67e22", markersize=14, markeredgewidth=2, label="p90" if i == 0 else None)
        ax.plot([p99], [i], "x", color="#c0392b", label="p99" if i == 0 else None)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1 * max([float(r.get("p99_ms") or 0) for r in rows] + [1.0]))
    ax.set_xlabel("latency (ms)")
    ax.set_title("Spread: p50 / p90 / p99")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def plot_gmacs(rows: Sequence[Mapping[str, Any]], peaks: Mapping[int, float]) -> str:
    """Achieved GMAC/s per bundle; the GEMM peak of its thread count as a marker (int8 may exceed the fp32 peak)."""
    fig, ax = _figure(len(rows))
    vals = [float(r.get("gmacs_per_s") or 0) for r in rows]
    ax.barh(range(len(rows)), vals, color="#2980b9", label="achieved")
    for i, r in enumerate(rows):
        peak = peaks.get(int(r.get("threads") or 0))
        if peak:
            ax.plot([peak], [i], "D", color="#c0392b", markersize=6, label="fp32 GEMM peak" if i == 0 else None)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("GMAC/s")
    ax.set_title("Achieved GMAC/s against the machine's XNNPACK GEMM peak")
    ax.set_xlim(0, 1.15 * max(vals + list(peaks.values()) + [1.0]))
    if peaks:
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    return _png(fig)


def plot_size(rows: Sequence[Mapping[str, Any]]) -> str:
    """Model file size per bundle (one bar per bundle, not per thread count)."""
    seen: dict[str, float] = {}
    for r in rows:
        if r.get("size_mb") is not None:
            seen.setdefault(str(r.get("name")), float(r["size_mb"]))
    fig, ax = _figure(max(1, len(seen)))
    ax.barh(range(len(seen)), list(seen.values()), color="#8e44ad")
    ax.set_yticks(range(len(seen)), list(seen), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("model file size (MB)")
    ax.set_title("Model size")
    return _png(fig)


def _cell(v: Any, digits: int = 2) -> str:
    if v is None or v == "":
        return "&ndash;"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(rows: Sequence[Mapping[str, Any]], peaks: Mapping[int, float]) -> str:
    head = ["bundle", "target", "precision", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "GMAC/s",
            "% of peak", "size MB", "budget"]
    out = ["<table id='results'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        if r.get("error"):
            out.append(f"<tr class='over'><td>{_cell(r.get('name'))}</td><td colspan='{len(head) - 1}'>error: "
                       f"{_cell(r['error'])}</td></tr>")
            continue
        peak = peaks.get(int(r.get("threads") or 0))
        pct = 100 * r["gmacs_per_s"] / peak if r.get("gmacs_per_s") and peak else None
        verdict = {True: "ok", False: "OVER", None: "&ndash;"}[r.get("within_budget")]
        cls = " class='over'" if r.get("within_budget") is False else ""
        cells = [r.get("name"), f"{r.get('target', '')} {r.get('backend', '')}", r.get("precision"), r.get("threads"),
                 r.get("p50_ms"), r.get("p90_ms"), r.get("p99_ms"), r.get("mean_ms"), _num(r.get("gmacs_per_s"), 1),
                 f"{pct:.0f}%" if pct else None, _num(r.get("size_mb"), 2)]
        out.append(f"<tr{cls}>" + "".join(f"<td>{_cell(c)}</td>" for c in cells) + f"<td>{verdict}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _num(v: Any, digits: int) -> str | None:
    return None if v is None else f"{float(v):.{digits}f}"


def _machine(machine: Mapping[str, Any], peaks: Mapping[int, float]) -> str:
    items = [("CPU", machine.get("cpu")), ("cores", machine.get("cores")), ("platform", machine.get("platform")),
             ("python", machine.get("python"))]
    items += [(f"XNNPACK GEMM peak, {t} thread(s)", f"{p:.1f} GMAC/s") for t, p in sorted(peaks.items())]
    items += [(k, v) for k, v in (machine.get("versions") or {}).items()]
    return "<table id='machine'>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>"
                                            for k, v in items) + "</table>"


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:12px 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.over td{background:#fdecea}
figure{margin:18px 0}img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:13px}"""


def render(results: Sequence[Mapping[str, Any]], budget_ms: float | None, machine: Mapping[str, Any],
           peaks: Mapping[int, float] | None = None, title: str = "edge-sdk benchmark") -> str:
    """The HTML text (results already carry `size_mb` when known)."""
    peaks = dict(peaks or {})
    ok = [r for r in results if not r.get("error")]
    plots = {"latency": plot_latency(ok, budget_ms), "spread": plot_spread(ok), "gmacs": plot_gmacs(ok, peaks),
             "size": plot_size(ok)} if ok else {}
    captions = {"latency": "p90 latency per bundle and thread count; red bars exceed the budget",
                "spread": "p50 (dot), p90 (tick) and p99 (cross) of each measurement",
                "gmacs": "achieved GMAC/s (model MACs / mean latency) and the fp32 XNNPACK GEMM peak",
                "size": "model file size"}
    figures = "\n".join(f"<figure id='plot-{k}'><img alt='{captions[k]}' src='data:image/png;base64,{v}'>"
                        f"<figcaption class='note'>{captions[k]}</figcaption></figure>" for k, v in plots.items())
    over = sum(1 for r in results if r.get("error") or r.get("within_budget") is False)
    verdict = (f"{over} of {len(results)} measurements failed or exceed the budget" if over else
               f"all {len(results)} measurements within the budget") if budget_ms else f"{len(results)} measurements"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="note">{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; budget: p90 &le; {_cell(budget_ms, 1)} ms;
{verdict}. Each bundle x thread count ran in its own fresh process.</p>
<h2>Results</h2>
{_table(results, peaks)}
<h2>Plots</h2>
{figures}
<h2>Machine and versions</h2>
{_machine(machine, peaks)}
</body></html>
"""


def measured_peaks(threads: Sequence[int]) -> dict[int, float]:
    """The cached XNNPACK GEMM peak per thread count (measured once per machine); {} where ExecuTorch is missing."""
    out = {}
    for t in sorted(set(threads)):
        try:
            from edge_sdk.profile import gemm_peak
            out[t] = gemm_peak(t)
        except Exception:  # no executorch (runtime-only install) or no room to build the GEMM: no peak column
            continue
    return out


def write_html_report(path: str | Path, results: Sequence[Mapping[str, Any]], sources: Sequence[str | Path],
                      budget_ms: float | None, machine: Mapping[str, Any] | None = None,
                      peaks: Mapping[int, float] | None = None) -> Path:
    """Write the report atomically; sizes come from the bundles in `sources` (matched by folder name)."""
    from edge_sdk.machine import machine_info
    sizes = {Path(str(s)).name: model_size_mb(s) for s in sources}
    rows = [{**r, "size_mb": sizes.get(str(r.get("name")))} for r in results]
    if peaks is None:
        peaks = measured_peaks([int(r["threads"]) for r in results if r.get("threads")])
    return atomic_write(path, render(rows, budget_ms, machine or machine_info(), peaks))
