"""Runtime harness: every runtime against PyTorch on decoded PNGs, I/O translation, platform errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime_bundles as rb
from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.manifest import InputSpec, OutputSpec, Quantization
from edge_sdk.preprocess import read_image
from edge_sdk.runtime import Predictor, TorchPredictor, load_bundle
from edge_sdk.runtime.predictor import quantize


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    return rb.build_bundles(rb.session_cache(tmp_path_factory))


@pytest.fixture(scope="session")
def reference() -> TorchPredictor:
    return TorchPredictor(rb.make_model(), labels=rb.LABELS)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[np.ndarray]:
    return [read_image(p) for p in rb.write_pngs(tmp_path_factory.mktemp("png"), n=4, size=96)]


@pytest.mark.parametrize("kind", rb.KINDS)
def test_runtime_matches_pytorch_on_decoded_images(bundles, reference, images, kind):
    predictor = load_bundle(bundles[kind])
    x = predictor.preprocess(images)
    np.testing.assert_array_equal(x, reference.preprocess(images))  # same preprocessing from the manifest
    assert x.shape == (4, 3, 64, 64) and x.dtype == np.float32
    ref = reference.run(x)
    out = predictor.run(x)  # batch 4 through a batch-1 model: looped
    assert out.shape == (4, rb.CLASSES) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-3 * max(1.0, np.abs(ref).max()))
    assert (out.argmax(1) == ref.argmax(1)).all()
    top = predictor.predict(images, top_k=3)
    ref_top = reference.predict(images, top_k=3)
    assert [t[0]["label"] for t in top] == [t[0]["label"] for t in ref_top]
    assert top[0][0]["label"].startswith("label_") and len(top[0]) == 3
    assert abs(sum(c["prob"] for c in predictor.predict(images, top_k=rb.CLASSES)[0]) - 1) < 1e-5


def test_runtimes_agree_with_each_other(bundles, images):
    outs = {k: load_bundle(p) for k, p in bundles.items()}
    x = outs["executorch"].preprocess(images)
    logits = {k: p.run(x) for k, p in outs.items()}
    for k in rb.KINDS[1:]:
        np.testing.assert_allclose(logits[k], logits["executorch"], atol=1e-3 * np.abs(logits[k]).max())


def test_predictor_exposes_bundle_and_target(bundles):
    p = load_bundle(bundles["tflite_nhwc"])
    assert p.target == "tflite" and p.bundle.path == bundles["tflite_nhwc"]
    assert p.input_spec.layout == "NHWC" and p.labels == rb.LABELS


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((1, 3, 32, 32), np.float32), "shape"),
    (np.zeros((1, 3, 64, 64), np.float64), "float32"),
    (np.zeros((3, 64, 64), np.float32), "shape"),
    (np.zeros((0, 3, 64, 64), np.float32), "shape"),
    ([[0.0]], "numpy array"),
])
def test_run_rejects_wrong_tensor(bundles, bad, msg):
    p = load_bundle(bundles["tflite"])
    with pytest.raises(UsageError, match=msg):
        p.run(bad)


def _spec(**kw) -> InputSpec:
    spec = InputSpec(shape=(1, 8, 8, 3), layout="NHWC", dtype="int8", resize=8, crop=8, mean=(0.5, 0.5, 0.5),
                     std=(0.25, 0.25, 0.25), quantization=Quantization(0.05, 3))
    return spec.replace(**kw)


def test_int8_nhwc_input_quantization_and_output_dequantization():
    seen = []

    def raw_run(q):  # what a full-integer NHWC .tflite would receive
        seen.append(q)
        return np.array([[10, -20, 30]], np.int8)

    p = Predictor(raw_run, _spec(), OutputSpec(shape=(1, 3), dtype="int8", quantization=Quantization(0.5, -2)),
                  None, target="tflite")
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = p.run(x)
    assert len(seen) == 2 and seen[0].shape == (1, 8, 8, 3) and seen[0].dtype == np.int8
    np.testing.assert_array_equal(seen[1][0], quantize(x[1].transpose(1, 2, 0), Quantization(0.05, 3), "int8"))
    np.testing.assert_allclose(out, [[6.0, -9.0, 16.0]] * 2)
    assert p.predict([np.zeros((8, 8, 3), np.uint8)], top_k=1)[0][0] == {"index": 2, "label": "class_2",
                                                                        "prob": pytest.approx(1 / (1 + np.exp(-10) + np.exp(-25)))}


def test_pixel_input_models_get_0_255_values():
    """Core ML image inputs take RGB pixels: the Predictor un-normalizes."""
    seen = []
    p = Predictor(lambda x: seen.append(x) or np.zeros((1, 2), np.float32),
                  _spec(layout="NCHW", dtype="float32", quantization=None, normalization_in_model=True,
                        shape=(1, 3, 8, 8)),
                  OutputSpec(shape=(1, 2)), None, target="coreml")
    img = np.full((8, 8, 3), 200, np.uint8)
    p.run(p.preprocess([img]))
    np.testing.assert_allclose(seen[0], 200.0, atol=1e-3)


def test_coreml_bundle_needs_macos(bundles, tmp_path):
    b = rb.copy_bundle(bundles["executorch"], tmp_path / "fake-coreml")
    rb.rewrite_manifest(b, target="coreml", backend="coreml")
    with pytest.raises(EdgeError, match="needs macOS"):
        load_bundle(b)


def test_coreml_delegated_pte_is_refused_on_linux(bundles, tmp_path):
    b = rb.copy_bundle(bundles["executorch"], tmp_path / "et-coreml")
    rb.rewrite_manifest(b, backend="coreml")
    with pytest.raises(EdgeError, match="Core ML"):
        load_bundle(b)


def test_bad_threads_and_compute_units(bundles):
    with pytest.raises(UsageError):
        load_bundle(bundles["tflite"], threads=0)
    with pytest.raises(UsageError, match="compute units"):
        load_bundle(bundles["tflite"], compute_units="GPU_PLEASE")


def test_executorch_threads_only_before_first_load(monkeypatch):
    """The pool may be sized once, before any program is loaded (the fresh-process case is in test_bench)."""
    from edge_sdk.runtime import engines
    monkeypatch.setattr(engines, "_ET_THREADS", 2)
    engines.set_executorch_threads(2)  # same count again: no-op
    engines.set_executorch_threads(None)
    with pytest.raises(EdgeError, match="fresh process"):
        engines.set_executorch_threads(1)
    monkeypatch.setattr(engines, "_ET_THREADS", None)
    monkeypatch.setattr(engines, "_ET_LOADED", True)
    with pytest.raises(EdgeError, match="before any program is loaded"):
        engines.set_executorch_threads(2)
