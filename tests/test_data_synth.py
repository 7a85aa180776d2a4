"""The procedural dataset: deterministic, balanced, shape x texture classes, atomic ImageFolder output, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edge_sdk.cli import cli
from edge_sdk.data.folder import check_same_classes, scan_imagefolder
from edge_sdk.data.synth import class_names, make_images, write_imagefolder
from edge_sdk.errors import UsageError


def test_make_images_shapes_and_determinism():
    x, y = make_images(12, size=64, classes=4, seed=3)
    assert x.shape == (12, 64, 64, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3] * 3
    x2, _ = make_images(5, size=64, classes=4, seed=3)
    assert np.array_equal(x[:5], x2)  # prefix-stable: image i depends only on (seed, i)
    x3, _ = make_images(5, size=64, classes=4, seed=4)
    assert not np.array_equal(x2, x3)
    assert x.std() > 20  # not blank


def test_classes_mix_shape_and_texture():
    names = class_names(4)
    assert names == ["circle_stripes", "circle_dots", "square_stripes", "square_dots"]
    shapes = {n.split("_")[0] for n in class_names(10)}
    textures = {n.split("_")[1] for n in class_names(10)}
    assert len(shapes) >= 3 and len(textures) >= 3
    assert len(set(class_names(30))) == 30
    with pytest.raises(UsageError):
        class_names(31)


def test_write_imagefolder_roundtrip(tmp_path):
    out = write_imagefolder(tmp_path / "ds", classes=4, per_class=3, seed=0, size=32)
    classes, samples = scan_imagefolder(out)
    assert classes == sorted(class_names(4)) and len(samples) == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder renamed away
    with pytest.raises(UsageError, match="not empty"):
        write_imagefolder(out, classes=4, per_class=3)


def test_scan_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        scan_imagefolder(tmp_path / "missing")
    with pytest.raises(UsageError, match="no class subfolders"):
        scan_imagefolder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(UsageError, match="no images"):
        scan_imagefolder(tmp_path)
    with pytest.raises(UsageError, match="only in val: c"):
        check_same_classes(["a", "b"], ["a", "b", "c"])


def test_cli_data_synth(tmp_path):
    out = tmp_path / "train"
    res = CliRunner().invoke(cli, ["data", "synth", str(out), "--classes", "4", "--per-class", "2",
                                   "--seed", "1", "--size", "32", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["images"] == 8 and len(list(out.rglob("*.png"))) == 8
    res = CliRunner().invoke(cli, ["data", "synth", str(out), "--classes", "4"])
    assert res.exit_code == 2 and "not empty" in res.output
    res = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "x"), "--classes", "99"])
    assert res.exit_code == 2 and "classes" in res.output
