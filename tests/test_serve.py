"""`edge-sdk serve` as a user runs it: a headless Chromium with a fake camera posts 30 frames -> a bench-schema report
with a verdict (exit 0 within the budget, 1 over it); only the page and the bundle are served; --https with a
self-signed certificate for the address; the terminal QR code; one error line for bundles the page cannot run.
"""
from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_tools import ROOT, browser_missing, camera_frames, free_port, run_browser, start_serve, write_y4m  # noqa: E402

TINY = ROOT / "tests" / "assets" / "tiny" / "levit_tiny.pt"
needs_browser = pytest.mark.skipif(bool(browser_missing()), reason=browser_missing() or "")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve_bundle")
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "convert", str(TINY), "--target", "tflite", "--nhwc",
                           "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return next(p for p in out.iterdir() if (p / "manifest.json").is_file())


def _run_serve_with_browser(bundle: Path, tmp: Path, *extra: str) -> tuple[subprocess.Popen, str, str, dict]:
    y4m = write_y4m(tmp / "cam.y4m", camera_frames(4))
    port = free_port()
    proc = start_serve(bundle, port, "--frames", "30", "--report", str(tmp / "out.json"), "--timeout", "180",
                       "--no-qr", *extra)
    page = run_browser({"url": f"http://127.0.0.1:{port}/", "y4m": str(y4m), "frames": 30, "wait_done": True},
                       tmp)
    stdout, stderr = proc.communicate(timeout=60)
    return proc, stdout, stderr, page


@needs_browser
def test_serve_frames_report_within_budget(bundle, tmp_path):
    proc, stdout, stderr, page = _run_serve_with_browser(bundle, tmp_path, "--budget-ms", "1000")
    assert page.get("driver_error") is None and page["camera"]["server_done"] is True, page
    assert proc.returncode == 0, stderr
    report = json.loads((tmp_path / "out.json").read_text())
    from edge_sdk.bench import FIELDS
    assert {"machine", "results", "budget_ms", "device"} <= set(report) and report["budget_ms"] == 1000
    (row,) = report["results"]
    assert set(FIELDS) - {"error", "p95_ms", "peak_rss_mb", "import_ms", "gmacs_per_s"} <= set(row)
    assert row["runs"] == 30 and len(row["per_frame"]) == 30 and row["within_budget"] is True
    assert row["target"] == "tflite" and row["model"] == "levit_tiny" and row["name"] == bundle.name
    assert "HeadlessChrome" in row["device"] and row["device"].endswith("[wasm]")
    times = sorted(f["inference_ms"] for f in row["per_frame"])
    assert 0 < row["p50_ms"] <= row["p90_ms"] <= times[-1] and row["min_ms"] == times[0]
    assert row["load_ms"] > 0 and row["first_ms"] > 0
    # the live/final terminal line per device: label, frame count, p50/p90, FPS, verdict
    assert "[wasm]" in stdout and "p50" in stdout and "p90" in stdout and "FPS" in stdout and ": ok" in stdout


@needs_browser
def test_serve_over_budget_exits_1_with_the_report(bundle, tmp_path):
    proc, _, stderr, _ = _run_serve_with_browser(bundle, tmp_path, "--budget-ms", "0.001")
    assert proc.returncode == 1 and "Traceback" not in stderr
    assert [ln for ln in stderr.splitlines() if ln.startswith("error: ")][0].count("p90 budget") == 1
    (row,) = json.loads((tmp_path / "out.json").read_text())["results"]
    assert row["runs"] == 30 and row["within_budget"] is False


def _get(url: str, ctx: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_serves_only_the_page_and_the_bundle(bundle, tmp_path):
    """Every file of the page + bundle is there; nothing else (bundle extras, repo files, traversal) is."""
    shutil.copy(ROOT / "README.md", bundle / "secret.txt")  # a file in the bundle folder that is not the bundle's
    port = free_port()
    proc = start_serve(bundle, port, "--no-qr")
    base = f"http://127.0.0.1:{port}/"
    try:
        for path in ("", "index.html", "js/app.js", "js/preprocess.js", "vendor/litertjs/core/dist/index.js",
                     "vendor/litertjs/core/wasm/litert_wasm_internal.wasm", "bundle/manifest.json",
                     "bundle/labels.txt", "bundle/model.tflite"):
            status, body = _get(base + path)
            assert status == 200 and body, path
        assert _get(base + "bundle/model.tflite")[1] == (bundle / "model.tflite").read_bytes()
        for path in ("bundle/secret.txt", "bundle/reference.npz", "bundle/../README.md", "..%2fREADME.md",
                     "package.json", "node_modules/@litertjs/core/package.json", "tools/browser.mjs",
                     "apps/web/index.html", "etc/passwd", "//etc/passwd", "bundle"):
            assert _get(base + path)[0] == 404, path
        cfg = json.loads(_get(base + "api/config")[1])
        assert cfg == {"budget_ms": 50.0, "report": True, "frames": None}
        req = urllib.request.Request(base + "api/frames", data=b"not json", method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400
    finally:
        proc.terminate()
        proc.wait(10)


def test_binds_loopback_unless_asked(bundle):
    from edge_sdk.serve.tls import lan_address
    lan = lan_address()
    if lan.startswith("127."):
        pytest.skip("no LAN address on this machine")
    import socket
    port = free_port()
    proc = start_serve(bundle, port, "--no-qr")
    try:
        with pytest.raises(OSError):
            socket.create_connection((lan, port), timeout=2).close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_https_self_signed_certificate_for_the_address(bundle, tmp_path, monkeypatch):
    """The certificate names the address (SAN), is cached, and the server speaks TLS with it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from cryptography import x509
    from edge_sdk.serve import tls
    cert, key, fp = tls.certificate("127.0.0.1", cache=tmp_path / "cache" / "edge-sdk" / "serve")
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert oct(key.stat().st_mode & 0o777) == "0o600" and len(fp.split(":")) == 32
    assert tls.certificate("127.0.0.1", cache=cert.parent)[2] == fp  # reused, not regenerated
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk.cli", "serve", str(bundle), "--port", str(port),
                             "--https", "--no-qr"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    try:
        import time
        ctx = ssl.create_default_context(cafile=str(cert))
        for _ in range(100):
            try:
                status, body = _get(f"https://127.0.0.1:{port}/", ctx)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert status == 200 and b"edge-sdk camera" in body
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"https://127.0.0.1:{port}/" in err and fp in err


def test_banner_prints_a_qr_code_for_the_lan_url(capsys):
    from edge_sdk.serve import ServeOptions, _print_banner
    _print_banner("https://192.168.1.23:8000/", ServeOptions(host="0.0.0.0", https=True), "b", "AB:CD")
    err = capsys.readouterr().err
    assert "url: https://192.168.1.23:8000/" in err
    assert sum(ch in err for ch in "█▀▄") >= 2 and len(err.splitlines()) > 10


@pytest.mark.parametrize("target, file", [("executorch", "model.pte"), ("coreml", "model.mlpackage")])
def test_bundles_the_page_cannot_run_get_one_error_line(bundle, tmp_path, target, file):
    fake = tmp_path / f"fake-{target}"
    shutil.copytree(bundle, fake)
    m = json.loads((fake / "manifest.json").read_text())
    m["target"] = target
    (fake / "manifest.json").write_text(json.dumps(m))
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "serve", str(fake), "--port", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "edge-sdk convert levit_tiny --target tflite --nhwc" in lines[0]


def test_bad_options_are_one_line(bundle, tmp_path):
    for args, msg in ((["--frames", "0"], "--frames must be >= 1"), (["--report", str(tmp_path)], "is a directory"),
                      (["--port", "70000"], "--port must be")):
        proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "serve", str(bundle), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and msg in proc.stderr, proc.stderr


@needs_browser
def test_https_on_the_lan_address_gives_the_page_a_camera(bundle, tmp_path):
    """The phone's path: --host 0.0.0.0 --https, the page opened at https://<LAN address> (a secure context only
    because of TLS), the certificate accepted once, camera frames timed and reported back."""
    from edge_sdk.serve.tls import lan_address
    lan = lan_address()
    if lan.startswith("127."):
        pytest.skip("no LAN address on this machine")
    import os
    y4m = write_y4m(tmp_path / "cam.y4m", camera_frames(4))
    port = free_port()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk.cli", "serve", str(bundle), "--host", "0.0.0.0",
                             "--port", str(port), "--https", "--frames", "10", "--report", str(tmp_path / "r.json"),
                             "--timeout", "180"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    import time
    time.sleep(3)
    page = run_browser({"url": f"https://{lan}:{port}/", "y4m": str(y4m), "frames": 10, "wait_done": True,
                        "ignore_https_errors": True}, tmp_path)
    stdout, stderr = proc.communicate(timeout=60)
    assert page.get("driver_error") is None and page["state"] != "error", page
    assert proc.returncode == 0, stderr
    assert f"https://{lan}:{port}/" in stderr and ("█" in stderr or "▀" in stderr)  # URL + QR code
    (row,) = json.loads((tmp_path / "r.json").read_text())["results"]
    assert row["runs"] == 10 and row["within_budget"] is not None
    assert {u.split("/")[2] for u in page["requests"] if u.startswith("http")} == {f"{lan}:{port}"}
