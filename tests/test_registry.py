"""Registry, options, checkpoints and the models/info CLI."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from edge_sdk.cli import cli
from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.models import create_model, list_models, save_weights
from edge_sdk.models import model_from_checkpoint
from edge_sdk.models.checkpoint import atomic_torch_save

TINY = "mobilevitv2_tiny"


def test_list_models_pattern():
    assert "levit_128s" in list_models("levit*")
    assert all(n.startswith("mobilevitv2") for n in list_models("mobilevitv2*"))
    assert list_models("nothing-matches*") == []
    assert not any(n.endswith("tiny") for n in list_models(include_tiny=False) if n.startswith("mobilevit"))


def test_unknown_model_did_you_mean():
    with pytest.raises(UsageError, match="did you mean: mobilevit_xxs"):
        create_model("mobilevit_xx")


def test_unknown_option_is_named():
    with pytest.raises(UsageError, match="bogus_knob"):
        create_model(TINY, bogus_knob=3)


def test_overrides_and_deploy_options():
    m = create_model(TINY, num_classes=3, input_size=128, labels=["a", "b", "c"])
    assert m.deploy.input_size == 128 and m.deploy.labels == ("a", "b", "c")
    assert m(m.example_inputs(1)[0]).shape == (1, 3)
    with pytest.raises(UsageError, match="labels"):
        create_model(TINY, num_classes=4, labels=["a"])
    with pytest.raises(UsageError, match="num_classes"):
        create_model(TINY, num_classes=0)


def test_checkpoint_roundtrip_and_wrong_model(tmp_path):
    torch.manual_seed(0)
    m = create_model(TINY, num_classes=5)
    path = save_weights(m, tmp_path / "w.pt")
    m2 = create_model(TINY, num_classes=5, checkpoint=path)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    m3 = model_from_checkpoint(path)
    assert m3.name == TINY and m3.num_classes == 5
    with pytest.raises(UsageError, match="is for model"):
        create_model("levit_tiny", num_classes=5, checkpoint=path)
    # a bare state dict from another model: keys do not fit
    bare = atomic_torch_save(create_model("levit_tiny", num_classes=5).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(UsageError, match="does not fit"):
        create_model(TINY, num_classes=5, checkpoint=bare)


def test_checkpoint_corrupt_and_unsafe(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a zip")
    with pytest.raises(EdgeError, match="cannot read checkpoint"):
        create_model(TINY, checkpoint=bad)
    with pytest.raises(UsageError, match="not found"):
        create_model(TINY, checkpoint=tmp_path / "missing.pt")
    # arbitrary pickled objects are refused by weights-only loading

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, evil)
    with pytest.raises(EdgeError, match="cannot read checkpoint"):
        create_model(TINY, checkpoint=evil)


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "keep.pt"
    atomic_torch_save({"a": torch.ones(1)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        atomic_torch_save({"a": Boom()}, path)
    assert torch.load(path, weights_only=True)["a"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]


def test_cli_models_json():
    res = CliRunner().invoke(cli, ["models", "levit*", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    names = {r["name"] for r in rows}
    assert {"levit_128s", "levit_384"} <= names
    r = next(r for r in rows if r["name"] == "levit_128s")
    assert r["family"] == "levit" and r["input_size"] == 224
    assert 7.4e6 < r["params"] < 8.2e6 and 2.5e8 < r["macs"] < 3.6e8


def test_cli_info_stages():
    res = CliRunner().invoke(cli, ["info", TINY, "--json", "--num-classes", "10"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["num_classes"] == 10 and info["params"] > 0 and info["macs"] > 0
    assert info["stages"] and info["stages"][-1]["shape"][0] == 1
    res = CliRunner().invoke(cli, ["info", TINY])
    assert res.exit_code == 0 and "stages" in res.output


def test_cli_unknown_model_exit_2():
    res = CliRunner().invoke(cli, ["info", "levit_128x"])
    assert res.exit_code == 2
    assert "did you mean" in res.output and "Traceback" not in res.output


def test_cli_doctor_json():
    res = CliRunner().invoke(cli, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output[res.output.index("{"):])
    names = {c["name"]: c for c in rep["checks"]}
    assert names["torch"]["version"].startswith("2.13.0")
    assert names["executorch"]["ok"] and names["coremltools"]["ok"]
    assert names["convert:coreml"]["ok"] and not names["run:coreml"]["ok"]
    assert names["run:executorch"]["ok"] and names["run:tflite"]["ok"]


def test_meta_device_counts_match_real():
    from edge_sdk.models import count_macs, count_params
    from edge_sdk.models.profile import meta_model
    for name in ("levit_tiny", "mobilevit_tiny"):
        real, meta = create_model(name), meta_model(name)
        assert count_params(real) == count_params(meta)
        assert count_macs(real) == count_macs(meta) > 0
