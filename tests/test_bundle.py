"""Bundle writing is atomic and reading refuses tampered or unsafe bundles."""
from __future__ import annotations

import json

import pytest

from edge_sdk.bundle import MANIFEST, read_bundle, sha256_file, update_manifest, write_bundle, write_labels
from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.manifest import InputSpec, Manifest, ModelInfo, OutputSpec


def _fill(content: bytes = b"model-bytes", labels=("cat", "dog")):
    def fill(tmp):
        (tmp / "model.bin").write_bytes(content)
        spec = InputSpec(resize=9, crop=8, mean=(0, 0, 0), std=(1, 1, 1), shape=(1, 3, 8, 8), name="x")
        return Manifest(model=ModelInfo("x"), target="executorch", backend="xnnpack", precision="fp32",
                        file="model.bin", input=spec, output=OutputSpec(shape=(1, len(labels)), name="y"),
                        labels=write_labels(tmp, labels), toolchain={}, report={}, parity={"status": "not_run"})
    return fill


def test_write_and_read(tmp_path):
    dest = write_bundle(tmp_path / "b", _fill())
    b = read_bundle(dest)
    assert b.manifest.schema_version == 1
    assert b.manifest.sha256 == sha256_file(dest / "model.bin")
    assert b.labels == ("cat", "dog") and b.manifest.input.crop == 8
    assert json.loads((dest / MANIFEST).read_text()) == b.manifest.to_json()
    assert sorted(p.name for p in dest.iterdir()) == ["labels.txt", "manifest.json", "model.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temp leftovers


def test_existing_bundle_needs_force_and_survives_failure(tmp_path):
    dest = write_bundle(tmp_path / "b", _fill(b"v1"))
    with pytest.raises(UsageError, match="--force"):
        write_bundle(dest, _fill(b"v2"))

    def failing(tmp):
        (tmp / "model.bin").write_bytes(b"half")
        raise RuntimeError("toolchain crashed")
    with pytest.raises(RuntimeError):
        write_bundle(dest, failing, force=True)
    assert (dest / "model.bin").read_bytes() == b"v1"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    write_bundle(dest, _fill(b"v2"), force=True)
    assert read_bundle(dest).model_file.read_bytes() == b"v2"


def test_refuses_to_replace_a_non_bundle(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("precious")
    with pytest.raises(UsageError, match="not a bundle"):
        write_bundle(tmp_path / "docs", _fill(), force=True)
    assert (tmp_path / "docs" / "notes.txt").read_text() == "precious"


def test_tampered_file_and_escaping_paths(tmp_path):
    dest = write_bundle(tmp_path / "b", _fill())
    (dest / "model.bin").write_bytes(b"tampered")
    with pytest.raises(EdgeError, match="sha256 mismatch"):
        read_bundle(dest)
    dest = write_bundle(tmp_path / "c", _fill())
    update_manifest(dest, file="../b/model.bin")
    with pytest.raises(EdgeError, match="escapes"):
        read_bundle(dest)
    update_manifest(dest, file="model.bin", labels="/etc/passwd")
    with pytest.raises(EdgeError, match="relative"):
        read_bundle(dest)


def test_bad_manifests(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_bundle(tmp_path / "nope")
    dest = write_bundle(tmp_path / "b", _fill())
    (dest / MANIFEST).write_text("{not json")
    with pytest.raises(EdgeError, match="not valid JSON"):
        read_bundle(dest)
    (dest / MANIFEST).write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(EdgeError, match="schema_version"):
        read_bundle(dest)


def test_atomic_write_uses_umask_permissions_and_leaves_no_temp(tmp_path):
    """mkstemp files are owner-only; a bundle or checkpoint must be readable like any file the user writes."""
    import os
    from edge_sdk.bundle import atomic_write
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "sub" / "f.json", "{}")
    finally:
        os.umask(old)
    assert path.read_text() == "{}"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]
