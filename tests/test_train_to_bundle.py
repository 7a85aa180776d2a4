"""Issue 5's hand-off: a checkpoint written by `edge-sdk train` converts with `edge-sdk convert` and keeps its labels."""
from __future__ import annotations

import json

from click.testing import CliRunner

from edge_sdk.cli import cli
from edge_sdk.train.quick import tiny_checkpoint


def test_training_checkpoint_converts_and_validates(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    out = tmp_path / "bundles"
    res = CliRunner().invoke(cli, ["convert", str(ckpt), "--target", "executorch", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    (bundle,) = [p for p in out.iterdir() if p.is_dir()]
    from edge_sdk.bundle import read_bundle
    manifest = read_bundle(bundle).manifest
    assert manifest.model.name == "levit_tiny" and manifest.model.num_classes == 4
    assert manifest.input.crop == 32  # the input size the model was trained at
    labels = (bundle / "labels.txt").read_text().split()
    assert len(labels) == 4 and all("_" in name for name in labels)  # synth class names, not class_0..
    assert manifest.parity["status"] == "passed"
    res = CliRunner().invoke(cli, ["validate", str(bundle), "--images", str(tmp_path / "ckpt-levit_tiny-data" / "val")])
    assert res.exit_code == 0, res.output
    # the same checkpoint through `MODEL --checkpoint FILE`
    res = CliRunner().invoke(cli, ["convert", "levit_tiny", "--checkpoint", str(ckpt), "--num-classes", "4",
                                   "--input-size", "32", "--target", "tflite", "-o", str(out)])
    assert res.exit_code == 0, res.output
