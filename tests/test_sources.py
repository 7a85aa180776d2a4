"""Model sources (converters/sources.py): zoo names, checkpoints, .pt2 programs and file.py:factory user code.

Each bad input gives one error line and writes nothing; the .pt2 and file.py:factory sources convert end to end
through the installed CLI.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from edge_sdk.converters.sources import (ExternalModel, SourceOptions, load_pt2, resolve_source, source_kind,
                                         _no_code_unpickling)
from edge_sdk.errors import EdgeError, UsageError

ASSETS = Path(__file__).parent / "assets" / "byom"
PATTERNS = ASSETS / "patterns.py"
DEPLOY = dict(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
EDGE = [str(Path(sys.executable).with_name("edge-sdk"))]
DEPLOY_FLAGS = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]


def factory(name: str) -> str:
    return f"{PATTERNS}:{name}"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("EDGE_SDK_DEBUG", None)
    return subprocess.run(EDGE + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def save_pt2(model: torch.nn.Module, path: Path, size: int = 32, extra: dict | None = None) -> Path:
    ep = torch.export.export(model.eval(), (torch.randn(1, 3, size, size),))
    torch.export.save(ep, str(path), extra_files=extra or {})
    return path


@pytest.mark.parametrize("spec, kind", [
    ("mobilevitv2_050", "zoo"), ("runs/x/best.pt", "checkpoint"), ("model.pt2", "pt2"),
    ("dir/model.py:build", "factory"), ("mypkg.models:build_net", "factory"), ("levit_128s", "zoo"),
])
def test_source_kind_from_spelling(spec: str, kind: str) -> None:
    assert source_kind(spec) == kind


def test_factory_source_carries_deploy_settings_from_options() -> None:
    src = resolve_source(factory("groupnorm1"), SourceOptions(num_classes=7, labels=tuple("abcdefg"), **DEPLOY))
    m = src.model
    assert isinstance(m, ExternalModel) and src.name == "groupnorm1"
    assert m.num_classes == 7  # passed to the factory's num_classes=
    assert (m.deploy.input_size, m.deploy.mean, m.deploy.std, m.deploy.labels) == (32, (0.5,) * 3, (0.25,) * 3,
                                                                                  tuple("abcdefg"))
    assert m.config_dict()["kind"] == "factory" and m.config_dict()["spec"].endswith("patterns.py:groupnorm1")
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_missing_deploy_settings_are_named_in_one_error() -> None:
    with pytest.raises(UsageError) as e:
        resolve_source(factory("groupnorm1"))
    msg = str(e.value)
    assert "--input-size" in msg and "--mean" in msg and "--std" in msg and "\n" not in msg


def test_labels_and_classes_must_agree_with_the_output() -> None:
    with pytest.raises(UsageError, match="3 labels given for a model with 10 classes"):
        resolve_source(factory("groupnorm1"), SourceOptions(labels=("a", "b", "c"), **DEPLOY))


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_weights_file_loads_into_the_factory_model(tmp_path: Path, fmt: str) -> None:
    from edge_sdk.converters.sources import _call_factory
    donor = _call_factory(factory("sdpa"), SourceOptions())
    with torch.no_grad():
        for p in donor.parameters():
            p.mul_(1.5)
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    else:
        torch.save(donor.state_dict(), path)
    m = resolve_source(factory("sdpa"), SourceOptions(weights=path, **DEPLOY)).model
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(m(x), donor.eval()(x))


def test_weights_of_another_model_are_one_error(tmp_path: Path) -> None:
    from edge_sdk.converters.sources import _call_factory
    path = tmp_path / "other.pt"
    torch.save(_call_factory(factory("sdpa"), SourceOptions()).state_dict(), path)
    with pytest.raises(UsageError, match=r"do not fit the model \((missing|unexpected)"):
        resolve_source(factory("groupnorm1"), SourceOptions(weights=path, **DEPLOY))


def test_pt2_input_size_comes_from_its_example(tmp_path: Path) -> None:
    from edge_sdk.converters.sources import _call_factory
    net = _call_factory(factory("expand_as"), SourceOptions())
    path = save_pt2(net, tmp_path / "m.pt2", size=48)
    m = resolve_source(path, SourceOptions(mean=DEPLOY["mean"], std=DEPLOY["std"])).model
    assert m.deploy.input_size == 48 and m.num_classes == 10 and m.name == "m"
    x = torch.randn(1, 3, 48, 48)
    assert torch.allclose(m(x), net(x), atol=1e-6)
    with pytest.raises(UsageError, match="--mean, --std"):
        resolve_source(path)
    with pytest.raises(UsageError, match="fixed to the size it was exported with"):
        resolve_source(path, SourceOptions(input_size=64, mean=DEPLOY["mean"], std=DEPLOY["std"]))


def test_pt2_metadata_supplies_deploy_settings(tmp_path: Path) -> None:
    from edge_sdk.converters.sources import PT2_META, _call_factory
    meta = {"name": "mynet", "deploy": {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5], "crop_pct": 1.0}}
    path = save_pt2(_call_factory(factory("expand_as"), SourceOptions()), tmp_path / "m.pt2",
                    extra={PT2_META: json.dumps(meta)})
    m = resolve_source(path).model
    assert m.name == "mynet" and m.deploy.mean == (0.1, 0.2, 0.3) and m.deploy.resize == 32


def test_pt2_loading_never_unpickles_code(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo pwned",))
    blob = tmp_path / "blob.pt"
    torch.save({"x": Payload()}, blob)
    with _no_code_unpickling():
        with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
            torch.load(blob)
        from torch.export.pt2_archive import _package
        with pytest.raises(EdgeError, match="refused"):
            _package.pickle.loads(pickle.dumps(1))
    assert torch.load is not None and callable(torch.load)


@pytest.mark.parametrize("content, match", [
    (b"not a zip at all", "not a torch.export program"),
    ("zip", "not a loadable torch.export program"),
])
def test_a_pt2_that_is_not_one_is_one_error(tmp_path: Path, content, match: str) -> None:
    path = tmp_path / "bad.pt2"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("hello.txt", "a zip, but no exported program")
    else:
        path.write_bytes(content)
    with pytest.raises(EdgeError, match=match):
        load_pt2(path)


def test_factory_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nraise ValueError('broken at import')\n")
    with pytest.raises(EdgeError, match="importing .*bad.py failed: ValueError: broken at import"):
        resolve_source(f"{bad}:build", SourceOptions(**DEPLOY))
    with pytest.raises(EdgeError, match="returned dict, not a torch.nn.Module"):
        resolve_source(factory("not_a_module"), SourceOptions(**DEPLOY))
    with pytest.raises(EdgeError, match="raised RuntimeError: this factory is broken on purpose"):
        resolve_source(factory("raises"), SourceOptions(**DEPLOY))
    with pytest.raises(UsageError, match="did you mean: groupnorm1"):
        resolve_source(factory("groupnorm"), SourceOptions(**DEPLOY))
    with pytest.raises(UsageError, match="model file not found"):
        resolve_source(f"{tmp_path}/missing.py:build", SourceOptions(**DEPLOY))


def test_zoo_and_checkpoint_sources_resolve_as_before(tmp_path: Path) -> None:
    from edge_sdk.models import create_model, save_weights
    src = resolve_source("levit_tiny", SourceOptions(num_classes=5))
    assert src.name == "levit_tiny" and src.model.num_classes == 5
    ckpt = save_weights(create_model("levit_tiny", num_classes=5), tmp_path / "c.pt")
    src = resolve_source(ckpt)
    assert src.name == "levit_tiny" and src.checkpoint == ckpt
    with pytest.raises(UsageError, match="--mean/--std/--crop-pct apply to .pt2"):
        resolve_source("levit_tiny", SourceOptions(mean=(0.5, 0.5, 0.5)))


# ---- through the CLI --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, match", [
    (["{bad_py}:build"], "importing .*bad.py failed: ZeroDivisionError"),
    ([factory("not_a_module")], "returned dict, not a torch.nn.Module"),
    (["{bad_pt2}"], "is not a torch.export program"),
    ([factory("groupnorm1"), "--weights", "{other}"], "do not fit the model"),
])
@pytest.mark.parametrize("command", ["convert", "lint"])
def test_cli_bad_sources_one_error_line_nothing_written(tmp_path: Path, args: list[str], match: str,
                                                       command: str) -> None:
    from edge_sdk.converters.sources import _call_factory
    (tmp_path / "bad.py").write_text("x = 1 / 0\n")
    (tmp_path / "bad.pt2").write_bytes(b"\x00" * 64)
    torch.save(_call_factory(factory("sdpa"), SourceOptions()).state_dict(), tmp_path / "other.pt")
    paths = {"bad_py": tmp_path / "bad.py", "bad_pt2": tmp_path / "bad.pt2", "other": tmp_path / "other.pt"}
    argv = [a.format(**paths) for a in args] + ["--input-size", "32", *DEPLOY_FLAGS]
    out = tmp_path / "out"
    extra = ["--target", "executorch", "-o", str(out)] if command == "convert" else ["--fix", str(out)]
    r = run_cli(command, *argv, *extra)
    lines = r.stderr.strip().splitlines()
    assert r.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert __import__("re").search(match, lines[0]), lines[0]
    assert not out.exists()


def test_cli_factory_with_fix_converts_to_one_xnnpack_subgraph(tmp_path: Path) -> None:
    r = run_cli("convert", factory("hybrid"), "--target", "executorch", "--input-size", "32", *DEPLOY_FLAGS,
                "--fix", "-o", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)[0]
    assert res["report"]["delegated_subgraphs"] == 1 and res["report"]["non_delegated"] == {}
    assert res["parity"]["status"] == "passed" and res["parity"]["images"]["max_abs_ratio"] < 1e-4
    manifest = json.loads((Path(res["bundle"]) / "manifest.json").read_text())
    config = manifest["model"]["config"]
    assert {"module_norms", "sdpa_to_matmul", "split_to_projections", "sum_to_mean"} <= set(config["rewrites"])
    assert all(a["max_abs_ratio"] <= 1e-5 for a in config["fix"]["applied"])
    assert manifest["input"]["mean"] == [0.5, 0.5, 0.5] and manifest["input"]["crop"] == 32


def test_cli_pt2_converts_end_to_end_to_tflite_and_fix_repairs_expand_as(tmp_path: Path) -> None:
    """A .pt2 with expand_as (timm MobileViTv2's pattern): litert-torch converts it to a file with WRONG values
    (parity catches it, exit 1); with --fix the same .pt2 converts and passes fp32 parity through the CLI."""
    from edge_sdk.converters.sources import _call_factory
    path = save_pt2(_call_factory(factory("expand_as"), SourceOptions()), tmp_path / "net.pt2")
    r = run_cli("convert", str(path), "--target", "tflite", *DEPLOY_FLAGS, "-o", str(tmp_path / "b"))
    assert r.returncode == 1 and "parity failed for net-tflite-litert-fp32" in r.stderr
    r = run_cli("convert", str(path), "--target", "tflite", *DEPLOY_FLAGS, "--fix", "-o", str(tmp_path / "c"),
                "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)[0]
    assert res["parity"]["status"] == "passed" and Path(res["bundle"]).name == "net-tflite-litert-fp32"
    assert res["parity"]["images"]["max_abs_ratio"] < 1e-4


@pytest.mark.parametrize("command", ["convert", "lint", "bench"])
def test_help_shows_an_example_for_pt2_and_factory_sources(command: str) -> None:
    from click.testing import CliRunner

    from edge_sdk.cli import cli
    out = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    examples = [ln.strip() for ln in out.output.splitlines() if ln.strip().startswith(f"edge-sdk {command} ")]
    pt2 = [e for e in examples if ".pt2" in e]
    factory_ex = [e for e in examples if ".py:" in e]
    assert pt2 and factory_ex, examples
    joined = out.output.replace("\n", " ")
    assert "--weights" in joined and "--input-size" in joined
    # the factory example's own line (or its continuation) passes the weights and the input size
    start = out.output.index(factory_ex[0])
    assert "--weights" in out.output[start:start + 300] and "--input-size" in out.output[start:start + 300]


def test_bench_torch_factory_takes_weights_and_input_size(tmp_path: Path) -> None:
    from edge_sdk.converters.sources import _call_factory
    net = _call_factory(factory("groupnorm1"), SourceOptions())
    torch.save(net.state_dict(), tmp_path / "w.pt")
    r = run_cli("bench", f"torch:{factory('groupnorm1')}", "--weights", str(tmp_path / "w.pt"), "--input-size", "48",
                "--runs", "2", "--warmup", "0", "--budget-ms", "10000", "--quiet", "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert res["target"] == "pytorch" and res["p50_ms"] > 0
    bad = run_cli("bench", f"torch:{factory('groupnorm1')}", "--weights", str(tmp_path / "missing.pt"), "--quiet")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error:")
