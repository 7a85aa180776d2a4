"""`edge-sdk validate`: passes on a good bundle, exits 1 on a tampered one or a missed threshold, measures accuracy
on a labelled ImageFolder; plus unit tests of the parity metrics (no conversion)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_sdk.cli import cli
from edge_sdk import parity


def validate(*args: str):
    return CliRunner().invoke(cli, ["validate", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A levit_tiny fp32 bundle whose labels are the synthetic dataset's class names."""
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    from edge_sdk.data.synth import class_names
    out = tmp_path_factory.mktemp("val")
    (r,) = convert("levit_tiny", "executorch", ConvertOptions(), out, num_classes=10, labels=class_names(10),
                   show_progress=False)
    return r.bundle


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle.name
    shutil.copytree(bundle, dst)
    return dst


@pytest.mark.slow
def test_validate_passes(bundle):
    result = validate(str(bundle), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["parity"]["status"] == "passed"
    assert report["parity"]["images"]["max_abs_ratio"] <= 1e-4
    assert report["parity"]["random"]["count"] == 4


@pytest.mark.slow
def test_validate_table_output(bundle):
    result = validate(str(bundle))
    assert result.exit_code == 0 and "passed" in result.output


@pytest.mark.slow
def test_tampered_model_file(bundle, tmp_path):
    b = copy_of(bundle, tmp_path)
    data = bytearray((b / "model.pte").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.pte").write_bytes(bytes(data))
    result = validate(str(b))
    assert result.exit_code == 1
    assert "sha256 mismatch" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_tampered_reference_misses_threshold(bundle, tmp_path):
    b = copy_of(bundle, tmp_path)
    with np.load(b / "reference.npz") as z:
        arrays = dict(z)
    arrays["image_logits"] = arrays["image_logits"] * 1.01  # 1% off: far above the fp32 limit of 1e-4
    np.savez_compressed(b / "reference.npz", **arrays)
    result = validate(str(b), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["passed"] is False and report["parity"]["status"] == "failed"
    assert any("max-abs" in f for f in report["failures"])
    assert result.stderr.strip().splitlines()[-1].startswith("error: validation failed")


@pytest.mark.slow
def test_threshold_option_makes_it_fail(bundle):
    result = validate(str(bundle), "--max-abs-ratio", "0")
    # fp32 XNNPACK is not bit-exact with PyTorch, so a zero tolerance must fail (exit 1)
    assert result.exit_code == 1 and "max-abs" in result.output


@pytest.mark.slow
def test_accuracy_on_labelled_folder(bundle, tmp_path):
    from edge_sdk.data.synth import write_imagefolder
    folder = write_imagefolder(tmp_path / "val", classes=10, per_class=2, size=72)
    result = validate(str(bundle), "--images", str(folder), "--json")
    assert result.exit_code == 0, result.output
    acc = json.loads(result.stdout)["accuracy"]
    assert acc["images"] == 20 and acc["classes"] == 10 and 0 <= acc["top1"] <= acc["top5"] <= 1
    result = validate(str(bundle), "--images", str(folder), "--min-accuracy", "1.0")
    assert result.exit_code == 1 and "accuracy" in result.output  # an untrained model is not 100% right


@pytest.mark.slow
def test_accuracy_folder_with_unknown_classes(bundle, tmp_path):
    (tmp_path / "imgs" / "zebra").mkdir(parents=True)
    import cv2
    cv2.imwrite(str(tmp_path / "imgs" / "zebra" / "a.png"), np.zeros((70, 70, 3), np.uint8))
    result = validate(str(bundle), "--images", str(tmp_path / "imgs"))
    assert result.exit_code == 2 and "zebra" in result.output


def test_missing_bundle(tmp_path):
    result = validate(str(tmp_path / "nope"))
    assert result.exit_code == 2 and result.output.startswith("error: bundle not found")


# ---- parity metrics (pure numpy) ---------------------------------------------------------------------------------

def test_compare_and_verdict_fp32():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]], np.float32)
    m = parity.compare(ref, ref + 1e-5)
    assert m["max_abs"] == pytest.approx(1e-5, rel=1e-2) and m["max_abs_ratio"] == pytest.approx(1e-5 / 3, rel=1e-2)
    assert m["top1_agreement"] == 1.0 and m["decisive"] == 2
    assert parity.verdict("fp32", m, m, parity.thresholds_for("fp32")) == []
    bad = parity.compare(ref, ref + 1e-2)
    assert parity.verdict("fp32", bad, m, parity.thresholds_for("fp32"))


def test_top1_judged_only_on_decisive_images():
    ref = np.array([[1.0, 1.001, 0.0], [5.0, 0.0, 0.0]], np.float32)  # first row: a near-tie
    out = np.array([[1.001, 1.0, 0.0], [5.0, 0.1, 0.0]], np.float32)  # flips the tie only
    m = parity.compare(ref, out)
    assert m["top1_agreement"] == 0.5 and m["decisive"] == 1 and m["top1_agreement_decisive"] == 1.0
    assert parity.verdict("int8", m, m, parity.thresholds_for("int8")) == []
    out[1] = [0.0, 5.0, 0.0]  # a real disagreement on the decisive image
    m = parity.compare(ref, out)
    assert any("top-1" in f for f in parity.verdict("int8", m, m, parity.thresholds_for("int8")))


def test_reference_roundtrip(tmp_path):
    ref = parity.ReferenceSet(np.zeros((2, 8, 8, 3), np.uint8), np.ones((2, 3), np.float32), 5,
                              np.ones((4, 3), np.float32))
    ref.save(tmp_path / "r.npz")
    back = parity.ReferenceSet.load(tmp_path / "r.npz")
    assert back.seed == 5 and back.random_inputs().shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(back.random_inputs(), parity.random_inputs(5, 4, 8))
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(Exception, match="not a valid reference set"):
        parity.ReferenceSet.load(tmp_path / "bad.npz")


def test_non_finite_outputs_fail_parity():
    ref = np.array([[1.0, 2.0, 3.0], [0.5, 0.1, 0.2]], np.float32)
    bad = ref.copy()
    bad[0, 1] = np.nan
    thresholds = parity.thresholds_for("fp32")
    fails = parity.verdict("fp32", parity.compare(ref, bad), parity.compare(ref, ref), thresholds)
    assert any("non-finite" in f and "converted" in f for f in fails)
    fails = parity.verdict("int8", parity.compare(bad, ref), parity.compare(ref, ref), parity.thresholds_for("int8"))
    assert any("reference" in f for f in fails)
    assert parity.verdict("fp32", parity.compare(ref, ref), parity.compare(ref, ref), thresholds) == []


def test_summary_says_when_top1_was_not_judged():
    """Random-weight logits are near-ties: '0% top-1' next to cosine 0.99998 would read as a failure."""
    from edge_sdk.parity import summary
    tied = {"status": "passed", "thresholds": {"min_cosine": 0.97, "min_top1": 0.98},
            "images": {"cosine_min": 0.99997, "top1_agreement": 0.0, "decisive": 0, "top1_agreement_decisive": None}}
    assert summary(tied) == "passed (top1 not judged: 0 decisive, cos 1.0000)"
    judged = {**tied, "images": {**tied["images"], "decisive": 5, "top1_agreement_decisive": 1.0}}
    assert summary(judged) == "passed (top1 100%, cos 1.0000)"
