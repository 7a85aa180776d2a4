"""`edge-sdk bench`: fresh-process measurements, JSON/CSV fields, the budget exit code, the adb path (fake adb).

No timing assertions: only that the numbers exist, are consistent and drive the exit code.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import runtime_bundles as rb
from edge_sdk import android
from edge_sdk.bench import apply_budget, over_budget
from edge_sdk.cli import cli

FAKE_ADB = Path(__file__).parent / "fake_adb"


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    return rb.build_bundles(rb.session_cache(tmp_path_factory))


def _bench(*args: str):
    return CliRunner().invoke(cli, ["bench", *map(str, args), "--quiet"])


def test_bench_fresh_processes_json_csv_and_generous_budget(bundles, tmp_path):
    res = _bench(bundles["executorch"], bundles["tflite_nhwc"], "--threads", "1,2", "--warmup", "1", "--runs", "3",
                 "--budget-ms", "100000", "--json", tmp_path / "b.json", "--csv", tmp_path / "b.csv")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["machine"]["cores"] >= 1 and "torch" in data["machine"]["versions"]
    rows = data["results"]
    assert [(r["target"], r["threads"]) for r in rows] == [("executorch", 1), ("executorch", 2), ("tflite", 1),
                                                           ("tflite", 2)]
    for r in rows:
        assert not r.get("error"), r
        for k in ("load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "throughput_fps",
                  "peak_rss_mb"):
            assert r[k] > 0 or (k == "std_ms" and r[k] >= 0), (k, r)
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["runs"] == 3 and r["within_budget"] is True and r["e2e"] is False
    # each thread setting ran in its own process: the ExecuTorch pool was sized to exactly that count
    assert [r["executorch_threads"] for r in rows[:2]] == [1, 2]
    with open(tmp_path / "b.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {"p90_ms", "load_ms", "peak_rss_mb", "threads"} <= set(table[0])
    assert "budget p90 <= 100000 ms" in res.output and "OVER" not in res.output


def test_bench_exit_1_over_budget_with_e2e(bundles, tmp_path):
    res = _bench(bundles["tflite"], "--runs", "2", "--warmup", "0", "--budget-ms", "0.0001", "--e2e",
                 "--json", tmp_path / "e.json")
    assert res.exit_code == 1, res.output
    assert "exceed the 0.0001 ms p90 budget" in res.output and "OVER" in res.output
    r = json.loads((tmp_path / "e.json").read_text())["results"][0]
    assert r["e2e"] is True and r["within_budget"] is False


def test_bench_bad_arguments(bundles, tmp_path):
    assert _bench(bundles["tflite"], "--threads", "a,b").exit_code == 2
    assert _bench(bundles["tflite"], "--threads", "0").exit_code == 2
    assert _bench(tmp_path / "missing").exit_code == 2
    assert _bench(bundles["tflite"], "--device", "usb").exit_code == 2


def test_budget_verdicts_and_failures():
    ok = apply_budget({"p90_ms": 10.0, "mean_ms": 8.0, "macs": 8e6}, 50)
    assert ok["within_budget"] is True and ok["gmacs_per_s"] == pytest.approx(1.0)
    assert apply_budget({"p95_ms": 60.0}, 50)["within_budget"] is False  # phone runners: p95 gates
    assert over_budget([ok, {"name": "x", "error": "boom"}]) == [{"name": "x", "error": "boom"}]


# ---- Android over adb, with the fake adb ---------------------------------------------------------------------

@pytest.fixture
def fake_adb(monkeypatch, tmp_path) -> Path:
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{FAKE_ADB}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    return log


def _runner(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    p.write_bytes(b"\x7fELF fake runner")
    return p


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_adb_benchmark_model(bundles, tmp_path, fake_adb):
    res = _bench(bundles["tflite"], "--device", "adb:PHONE1", "--runner", _runner(tmp_path, "benchmark_model"),
                 "--threads", "1,4", "--warmup", "3", "--runs", "20", "--json", tmp_path / "a.json")
    assert res.exit_code == 0, res.output
    calls = _calls(fake_adb)
    assert all(c[:2] == ["-s", "PHONE1"] for c in calls)
    assert ["-s", "PHONE1", "push", str(bundles["tflite"] / "model.tflite"),
            "/data/local/tmp/edge-sdk/levit_tiny-tflite-litert-fp32.tflite"] in calls
    assert calls[1][2:] == ["push", str(tmp_path / "benchmark_model"), "/data/local/tmp/edge-sdk/benchmark_model"]
    runs = [c[3] for c in calls if c[2] == "shell" and "--graph=" in c[3]]
    assert len(runs) == 2 and "--num_threads=4" in runs[1]
    assert "--warmup_runs=3" in runs[0] and "--num_runs=20" in runs[0] and "--use_xnnpack=true" in runs[0]
    r = json.loads((tmp_path / "a.json").read_text())["results"][0]
    assert r["device"] == "adb:PHONE1" and r["runner"] == "benchmark_model"
    assert r["load_ms"] == pytest.approx(12.345) and r["first_ms"] == pytest.approx(3.1)
    assert r["mean_ms"] == pytest.approx(2.14425) and r["p50_ms"] == pytest.approx(2.12)
    assert r["p95_ms"] == pytest.approx(2.31) and r["std_ms"] == pytest.approx(0.075)
    assert r["peak_rss_mb"] == pytest.approx(9.6) and r["within_budget"] is True


def test_adb_executor_runner_budget(bundles, tmp_path, fake_adb):
    res = _bench(bundles["executorch"], "--device", "adb", "--runner", _runner(tmp_path, "my_runner"),
                 "--runner-kind", "executor_runner", "--runs", "8", "--budget-ms", "1", "--json", tmp_path / "e.json")
    assert res.exit_code == 1 and "p90 budget" in res.output
    shells = [c[1] for c in _calls(fake_adb) if c[0] == "shell"]
    assert any("--num_executions=8 --cpu_threads=1" in s and "--model_path=" in s for s in shells)
    r = json.loads((tmp_path / "e.json").read_text())["results"][0]
    assert r["mean_ms"] == pytest.approx(4.25) and r["first_ms"] == pytest.approx(4.25)
    assert r["within_budget"] is False


def test_adb_errors(bundles, tmp_path, fake_adb, monkeypatch):
    bm = _runner(tmp_path, "benchmark_model")
    res = _bench(bundles["executorch"], "--device", "adb", "--runner", bm)
    assert res.exit_code == 2 and "runs only tflite" in res.output
    res = _bench(bundles["tflite"], "--device", "adb", "--runner", _runner(tmp_path, "mystery"))
    assert res.exit_code == 2 and "--runner-kind" in res.output
    assert _bench(bundles["tflite"], "--device", "adb").exit_code == 2  # no --runner
    monkeypatch.setenv("FAKE_ADB_NO_DEVICE", "1")
    res = _bench(bundles["tflite"], "--device", "adb", "--runner", bm)
    assert res.exit_code == 1 and "no devices" in res.output and "Traceback" not in res.output
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb at all
    res = _bench(bundles["tflite"], "--device", "adb", "--runner", bm)
    assert res.exit_code == 1 and "adb not found" in res.output


def test_parsers_on_recorded_logs():
    r = android.parse_benchmark_model((FAKE_ADB / "benchmark_model.log").read_text())
    assert r["min_ms"] == pytest.approx(2.01) and r["max_ms"] == pytest.approx(2.98)
    old_format = "count=50 first=1 curr=2 min=1 max=3 avg=2.95034e+06 std=109798\n" \
                 "Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, " \
                 "Inference (avg): 2.95034e+06\nPeak memory footprint (MB): init=4.92969 overall=138.809\n"
    r = android.parse_benchmark_model(old_format)
    assert r["mean_ms"] == pytest.approx(2950.34) and r["peak_rss_mb"] == pytest.approx(138.809)
    assert "p50_ms" not in r
    assert android.parse_executor_runner("I 00:00:01 x.cpp:1] Model executed successfully 10 time(s) in 42.5 ms.") \
        == (10, 42.5)
    with pytest.raises(Exception, match="did not"):
        android.parse_benchmark_model("ERROR: Model file doesn't exist")
