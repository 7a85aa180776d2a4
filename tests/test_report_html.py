"""`edge-sdk bench --html`: one self-contained file with the results table, four inlined plots, machine and versions;
checked as HTML and, where Chromium is installed, rendered headless (screenshot not blank, the plots decoded).
"""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import runtime_bundles as rb
from edge_sdk.cli import cli
from edge_sdk.report_html import PLOT_IDS, render

MACHINE = {"cpu": "Test CPU", "cores": 2, "platform": "Linux", "python": "3.11",
           "versions": {"executorch": "1.5.1", "ai-edge-litert": "2.3.0"}}


def _row(name: str, threads: int, p90: float, within: bool, **kw) -> dict:
    return {"name": name, "target": "executorch", "backend": "xnnpack", "precision": "fp32", "threads": threads,
            "p50_ms": p90 * 0.9, "p90_ms": p90, "p99_ms": p90 * 1.2, "mean_ms": p90 * 0.92, "macs": 300_000_000,
            "gmacs_per_s": 0.3 / (p90 * 0.92e-3), "within_budget": within, "size_mb": 12.5, **kw}


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.external: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag in ("script", "link") or (tag == "img" and not a.get("src", "").startswith("data:")):
            self.external.append(tag)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):  # noqa: ANN001
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None


def _parse(text: str) -> _Parser:
    p = _Parser()
    p.feed(text)
    return p


def test_render_has_table_plots_machine():
    rows = [_row("levit_128s-executorch-xnnpack-fp32", 1, 10.0, True),
            _row("levit_128s-executorch-xnnpack-fp32", 2, 6.0, True),
            _row("mobilevitv2_100-tflite-litert-fp32", 1, 55.0, False),
            {"name": "broken-bundle", "threads": 1, "error": "worker exited with code -6"}]
    text = render(rows, 50.0, MACHINE, {1: 43.6, 2: 67.0})
    p = _parse(text)
    assert p.external == []  # self-contained: no scripts, stylesheets or linked images
    assert len(p.imgs) == len(PLOT_IDS)
    for img in p.imgs:
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    for plot in PLOT_IDS:
        assert f"id='plot-{plot}'" in text
    table = p.tables["results"]
    assert table[0][:6] == ["bundle", "target", "precision", "threads", "p50 ms", "p90 ms"]
    assert len(table) == 1 + len(rows)
    assert table[1][-1] == "ok" and table[3][-1] == "OVER"
    assert table[1][9] == f"{100 * rows[0]['gmacs_per_s'] / 43.6:.0f}%"  # % of the 1-thread peak
    assert table[2][9] == f"{100 * rows[1]['gmacs_per_s'] / 67.0:.0f}%"  # 2-thread row: the 2-thread peak
    assert table[1][10] == "12.50"
    assert "error: worker exited with code -6" in table[4][1]
    machine = dict(r for r in p.tables["machine"] if len(r) == 2)
    assert machine["CPU"] == "Test CPU" and machine["executorch"] == "1.5.1"
    assert machine["XNNPACK GEMM peak, 1 thread(s)"] == "43.6 GMAC/s"
    assert "2 of 4 measurements failed or exceed the budget" in text


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    return rb.build_bundles(rb.session_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def report(bundles, tmp_path_factory, monkeypatch_module) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    res = CliRunner().invoke(cli, ["bench", str(bundles["executorch"]), str(bundles["tflite"]), "--warmup", "1",
                                   "--runs", "5", "--budget-ms", "100000", "--quiet", "--html", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGE_SDK_CACHE", str(tmp_path_factory.mktemp("cache")))  # the GEMM peak is measured, not reused
    yield mp
    mp.undo()


def test_bench_html_option_writes_the_report(report, bundles):
    text = report.read_text()
    p = _parse(text)
    assert p.external == [] and len(p.imgs) == len(PLOT_IDS)
    table = p.tables["results"]
    names = [r[0] for r in table[1:]]
    assert names == [bundles["executorch"].name, bundles["tflite"].name]
    for r in table[1:]:
        assert float(r[5]) > 0 and r[-1] == "ok"  # p90 measured, within the generous budget
        assert re.fullmatch(r"\d+%", r[9])  # % of the measured GEMM peak
        size = float(r[10])
        assert 0.01 < size < 5  # the tiny model's file
    pte = bundles["executorch"] / "model.pte"
    assert float(table[1][10]) == pytest.approx(pte.stat().st_size / 1e6, abs=0.005)
    machine = dict(r for r in p.tables["machine"] if len(r) == 2)
    assert "XNNPACK GEMM peak, 1 thread(s)" in machine and machine["cores"]


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian chromium (headless screenshot)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    import cv2
    shot = tmp_path / "shot.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,2600",
           f"--screenshot={shot}", report.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2600, 1200)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert gray.std() > 10  # not blank
    # the plots were decoded and drawn: saturated bar colours (green bars, blue GMAC/s bars) are on screen
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    colored = (hsv[..., 1] > 120) & (hsv[..., 2] > 80)
    assert colored.mean() > 0.005
    assert np.count_nonzero(colored[:, : img.shape[1] // 2]) > 1000
