"""`edge-sdk convert`: one real conversion through the CLI (manifest contents) and every bad-input path.

Bad input must give one `error:` line, exit 2 (usage) or 1 (failure), no traceback, no partial bundle, and never
touch an existing bundle.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_sdk.cli import cli

MODEL = "levit_tiny"
LABELS = [f"thing_{i}" for i in range(10)]


def run(*args: str):
    return CliRunner().invoke(cli, ["convert", *args], catch_exceptions=False)


def error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[-1]


def no_partial(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """An edge-sdk checkpoint of levit_tiny -> executorch fp32 through the CLI with a labels file and --json."""
    from edge_sdk.models import create_model, save_weights
    root = tmp_path_factory.mktemp("cli")
    labels = root / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    ckpt = save_weights(create_model(MODEL, num_classes=10), root / "weights.pt")
    result = run(str(ckpt), "--target", "executorch", "--labels", str(labels), "-o", str(root / "out"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return root, data


@pytest.mark.slow
def test_cli_json_result(converted):
    root, data = converted
    (r,) = data
    assert Path(r["bundle"]).name == f"{MODEL}-executorch-xnnpack-fp32"
    assert r["file"] == "model.pte" and r["size_bytes"] > 10_000
    assert r["report"]["delegated_subgraphs"] == 1
    assert r["parity"]["status"] == "passed"


@pytest.mark.slow
def test_manifest_contents(converted):
    from edge_sdk.bundle import read_bundle, sha256_file
    root, data = converted
    bundle = Path(data[0]["bundle"])
    b = read_bundle(bundle)
    m = b.manifest
    assert json.loads((bundle / "manifest.json").read_text()) == m.to_json()  # the file is exactly the contract
    assert m.schema_version == 1
    assert m.sha256 == sha256_file(bundle / "model.pte")
    assert m.model.name == MODEL and m.model.num_classes == 10
    assert m.model.params > 1000 and m.model.macs > 1000
    assert m.model.checkpoint_sha256 == sha256_file(root / "weights.pt")
    assert (m.input.shape, m.input.layout, m.input.dtype, m.input.color, m.input.crop) == \
        ((1, 3, 64, 64), "NCHW", "float32", "RGB", 64)
    assert m.input.resize == m.model.deploy["resize"] and m.input.normalization_in_model is False
    assert m.input.quantization is None and len(m.input.mean) == 3 and len(m.input.std) == 3
    assert m.labels == "labels.txt"
    assert (bundle / "labels.txt").read_text().splitlines() == LABELS
    assert set(m.toolchain) >= {"torch", "executorch", "coremltools", "litert-torch", "ai-edge-litert", "numpy"}
    assert m.toolchain["executorch"]
    assert m.parity["status"] == "passed" and m.reference == "reference.npz"
    assert b.labels == tuple(LABELS)
    no_partial(bundle.parent)


@pytest.mark.slow
def test_existing_bundle_not_replaced_without_force(converted):
    root, data = converted
    bundle = Path(data[0]["bundle"])
    before = tree_digest(bundle)
    result = run(MODEL, "--target", "executorch", "-o", str(bundle.parent), "--num-classes", "10")
    assert result.exit_code == 2
    assert "--force" in error_line(result)
    assert tree_digest(bundle) == before


@pytest.mark.slow
def test_toolchain_failure_keeps_existing_bundle(converted, monkeypatch):
    import edge_sdk.converters.executorch as et
    root, data = converted
    bundle = Path(data[0]["bundle"])
    before = tree_digest(bundle)

    def boom(*a, **k):
        raise RuntimeError("XNNPACK exploded\nsecond line")
    monkeypatch.setattr(et, "export_program", boom)
    result = run(MODEL, "--target", "executorch", "-o", str(bundle.parent), "--num-classes", "10", "--labels",
                 str(root / "labels.txt"), "--force")
    assert result.exit_code == 1
    line = error_line(result)
    assert "XNNPACK exploded" in line and "second line" not in result.output
    assert tree_digest(bundle) == before
    no_partial(bundle.parent)


# ---- bad input (no conversion runs) ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, words", [
    (["levit_tiny", "--target", "executorhc"], 2, ["unknown target", "did you mean: executorch"]),
    (["levit_tinyy", "--target", "executorch"], 2, ["unknown model", "levit_tiny"]),
    (["levit_tiny", "--target", "executorch", "--precision", "fp16"], 2, ["supported: fp32, int8, mixed"]),
    (["levit_tiny", "--target", "executorch", "--precision", "int4"], 2, ["unknown precision"]),
    (["levit_tiny", "--target", "executorch", "--backend", "vulkan"], 2, ["supported: xnnpack, coreml"]),
    (["levit_tiny", "--target", "executorch", "--backend", "coreml", "--precision", "int8"], 2,
     ["backend coreml", "supported: fp32, fp16"]),
    (["levit_tiny", "--target", "executorch", "--nhwc"], 2, ["--nhwc is not supported"]),
    (["levit_tiny", "--target", "executorch", "--deployment-target", "iOS17"], 2, ["--deployment-target"]),
    (["levit_tiny", "--target", "all", "--precision", "int8"], 2, ["--target all"]),
    (["levit_tiny", "--target", "all", "--nhwc"], 2, ["--target all"]),
])
def test_usage_errors(tmp_path, args, code, words):
    result = run(*args, "-o", str(tmp_path))
    assert result.exit_code == code, result.output
    line = error_line(result)
    for w in words:
        assert w in line
    assert list(tmp_path.iterdir()) == []


def test_calib_without_precision_that_calibrates(tmp_path):
    (tmp_path / "calib").mkdir()
    result = run(MODEL, "--target", "executorch", "--calib", str(tmp_path / "calib"), "-o", str(tmp_path / "o"))
    assert result.exit_code == 2 and "--calib is only used" in error_line(result)


def test_calib_folder_without_images(tmp_path):
    calib = tmp_path / "calib"
    (calib / "sub").mkdir(parents=True)
    (calib / "notes.txt").write_text("no images here")
    result = run(MODEL, "--target", "executorch", "--precision", "int8", "--calib", str(calib),
                 "-o", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "holds no images" in error_line(result)
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_missing_checkpoint(tmp_path):
    result = run(str(tmp_path / "nope.pt"), "--target", "executorch", "-o", str(tmp_path / "o"))
    assert result.exit_code == 2 and "checkpoint not found" in error_line(result)
    result = run(MODEL, "--checkpoint", str(tmp_path / "nope.pt"), "--target", "executorch", "-o", str(tmp_path))
    assert result.exit_code == 2 and "checkpoint not found" in error_line(result)


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    result = run(str(bad), "--target", "executorch", "-o", str(tmp_path / "o"))
    assert result.exit_code == 1 and "cannot read checkpoint" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_checkpoint_from_another_model(tmp_path):
    from edge_sdk.models import create_model, save_weights
    ckpt = save_weights(create_model("cctt_micro", num_classes=10), tmp_path / "cctt.pt")
    result = run(MODEL, "--checkpoint", str(ckpt), "--target", "executorch", "-o", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "cctt_micro" in error_line(result)
    result = run(MODEL, "--checkpoint", str(ckpt), "--num-classes", "7", "--target", "executorch",
                 "-o", str(tmp_path / "o"))
    assert result.exit_code == 2 and "--num-classes 7" in error_line(result)


def test_labels_count_mismatch(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    result = run(MODEL, "--labels", str(labels), "--num-classes", "10", "--target", "executorch", "-o", str(tmp_path / "o"))
    assert result.exit_code == 2 and "3 labels" in error_line(result)


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run(MODEL, "--target", "executorch", "-o", str(blocker / "sub"))
    assert result.exit_code == 1 and "cannot create output directory" in error_line(result)


def test_help_lists_targets_from_table():
    result = CliRunner().invoke(cli, ["convert", "--help"])
    assert result.exit_code == 0
    assert "executorch" in result.output and "--backend xnnpack" in result.output and "Example:" in result.output
