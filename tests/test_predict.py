"""`edge-sdk predict` through the CLI: same top-1 as PyTorch on every runtime, and one clear error per bad input."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import runtime_bundles as rb
from edge_sdk.cli import cli
from edge_sdk.preprocess import read_image
from edge_sdk.runtime import TorchPredictor


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    return rb.build_bundles(rb.session_cache(tmp_path_factory))


@pytest.fixture(scope="session")
def pngs(tmp_path_factory) -> list[Path]:
    return rb.write_pngs(tmp_path_factory.mktemp("png"), n=3, size=80)


def _predict(*args: str):
    return CliRunner().invoke(cli, ["predict", *map(str, args)])


def test_predict_json_matches_pytorch_top1_on_every_runtime(bundles, pngs):
    ref = TorchPredictor(rb.make_model(), labels=rb.LABELS).predict([read_image(p) for p in pngs], top_k=2)
    for kind, bundle in bundles.items():
        res = _predict(bundle, *pngs, "--top-k", "2", "--json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.output[res.output.index("{"):])
        assert out["target"] == ("executorch" if kind == "executorch" else "tflite")
        preds = out["predictions"]
        assert [p["image"] for p in preds] == [str(p) for p in pngs]
        assert all(len(p["top_k"]) == 2 for p in preds)
        assert [p["top_k"][0]["label"] for p in preds] == [r[0]["label"] for r in ref], kind
        assert [p["top_k"][0]["prob"] for p in preds] == pytest.approx([r[0]["prob"] for r in ref], abs=1e-3)


def test_predict_table_and_npy_tensor_input(bundles, pngs, tmp_path):
    res = _predict(bundles["tflite"], pngs[0], "--top-k", "3")
    assert res.exit_code == 0 and "label_" in res.output and "rank" in res.output
    x = np.zeros((2, 3, 64, 64), np.float32)
    np.save(tmp_path / "x.npy", x)
    res = _predict(bundles["tflite"], tmp_path / "x.npy", "--json")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output[res.output.index("{"):])["predictions"]) == 2


def _model_file(bundle: Path) -> Path:
    return bundle / json.loads((bundle / "manifest.json").read_text())["file"]


def _corrupt(kind: str, bundle: Path) -> None:
    f = _model_file(bundle)
    data = f.read_bytes()
    if kind == "missing":
        f.unlink()
    elif kind == "sha_mismatch":
        f.write_bytes(data[:-10])
    elif kind == "truncated":
        f.write_bytes(data[: len(data) // 2])
        rb.fix_sha(bundle)  # the manifest agrees: only the identifier/native checks can catch it
    elif kind == "random_bytes":
        f.write_bytes(os.urandom(len(data)))
        rb.fix_sha(bundle)
    elif kind == "random_body":  # a valid identifier in front of garbage
        f.write_bytes(data[:8] + os.urandom(len(data) - 8))
        rb.fix_sha(bundle)
    elif kind == "escape":
        rb.rewrite_manifest(bundle, file="../outside.pte")
    elif kind == "bad_json":
        (bundle / "manifest.json").write_text("{not json")
    elif kind == "old_schema":
        rb.rewrite_manifest(bundle, schema_version=99)


@pytest.mark.parametrize("target", ["executorch", "tflite"])
@pytest.mark.parametrize("kind, message", [
    ("missing", "missing"), ("sha_mismatch", "sha256 mismatch"), ("truncated", "truncated or corrupt"),
    ("random_bytes", "not a valid"), ("random_body", "truncated or corrupt"), ("escape", "escapes the bundle"),
    ("bad_json", "not valid JSON"), ("old_schema", "schema_version"),
])
def test_bad_bundle_gives_one_clear_error(bundles, pngs, tmp_path, target, kind, message):
    b = rb.copy_bundle(bundles[target], tmp_path / "b")
    (tmp_path / "outside.pte").write_bytes(_model_file(b).read_bytes())
    _corrupt(kind, b)
    after_corruption = {p.name: p.read_bytes() for p in b.iterdir()}
    res = _predict(b, pngs[0])
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output
    assert sum(line.startswith("error:") for line in res.output.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in b.iterdir()} == after_corruption  # reading never writes


@pytest.mark.parametrize("make, code, message", [
    (lambda d: d / "nope.png", 1, "image not found"),
    (lambda d: (d / "text.png").write_text("hello") and d / "text.png", 1, "cannot decode image"),
    (lambda d: (d / "empty.jpg").write_bytes(b"") == 0 and d / "empty.jpg", 1, "cannot decode image"),
    (lambda d: np.save(d / "s.npy", np.zeros((1, 3, 32, 32), np.float32)) or d / "s.npy", 2, "shape"),
    (lambda d: np.save(d / "t.npy", np.zeros((1, 3, 64, 64), np.float64)) or d / "t.npy", 2, "float32"),
])
def test_bad_input_gives_one_clear_error(bundles, tmp_path, make, code, message):
    res = _predict(bundles["executorch"], make(tmp_path))
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output


def test_bundle_not_found_is_a_usage_error(tmp_path, pngs):
    res = _predict(tmp_path / "no-such-bundle", pngs[0])
    assert res.exit_code == 2 and "bundle not found" in res.output


def test_predict_help_has_example():
    res = CliRunner().invoke(cli, ["predict", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output
