"""Labels given to `convert` reach the Core ML classifier; without labels no classifier is invented."""
from __future__ import annotations


from edge_sdk.converters import ConvertOptions
from edge_sdk.converters.pipeline import convert


def test_labels_become_the_coreml_classifier(tmp_path):
    import coremltools as ct
    labels = [f"thing{i}" for i in range(10)]
    (res,) = convert("cctt_micro", "coreml", ConvertOptions(precision="fp16"), tmp_path, labels=labels,
                     num_classes=10, show_progress=False)
    spec = ct.utils.load_spec(str(res.bundle / res.file))
    assert spec.description.predictedFeatureName == "classLabel"
    outs = {o.name: o.type.WhichOneof("Type") for o in spec.description.output}
    assert outs["classLabel"] == "stringType" and outs["logits"] == "multiArrayType"
    from edge_sdk.converters.coreml_report import load_program
    ops = load_program(res.bundle / res.file).functions["main"].operations
    (classify,) = [op for op in ops if op.op_type == "classify"]
    assert list(classify.inputs["classes"].val) == labels
    assert (res.bundle / "labels.txt").read_text().split() == labels
    from edge_sdk.bundle import read_bundle
    manifest = read_bundle(res.bundle).manifest
    assert manifest.parity["status"] == "not_run" and "macOS" in manifest.parity["reason"]
    assert manifest.output.extras == {"class_label": "classLabel", "class_probabilities": "classLabel_probs"}
