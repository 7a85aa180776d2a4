"""Hand-edited manifests, as a hostile user would: every field of a real manifest of each target removed, retyped
and set out of range, and labels.txt missing / wrong length / not UTF-8, through predict, validate and bench.

The rule (README, "Errors"): a bad manifest gives ONE `error:` line naming the field and exit 1, never a traceback.
A mutation that leaves the manifest valid (an optional field removed, a free-form report value changed) may
succeed; whatever happens, the command ends with exit 0, or exit 1 and one error line.
"""
from __future__ import annotations

import copy
import fcntl
import json
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

import runtime_bundles as rb
from edge_sdk.cli import cli

# Fields whose contents are free-form (owned by a target, the toolchain or parity): only their container is typed.
FREE = ("report", "toolchain", "model.config", "model.deploy", "parity.", "conversion", "extra", "input.coreml_type",
        "input.pixel_range", "output.class_label", "output.class_probabilities")
# Fields a manifest may leave out (defaults apply); removing them must not crash, but need not fail.
OPTIONAL = {"created", "reference", "conversion", "extra", "labels", "model.family", "model.num_classes",
            "model.config", "model.deploy", "model.params", "model.macs", "model.checkpoint_sha256", "input.name",
            "input.scale", "input.quantization", "output.kind", "output.dtype", "output.name", "output.quantization"}
# String fields any non-empty value of is well-formed (deeper code judges them, with its own one-line errors).
FREE_STRINGS = {"target", "backend", "precision", "file", "created", "input.name", "output.name", "model.name",
                "model.family", "reference", "labels"}


def _coreml_bundle(cache: Path) -> Path:
    """A real Core ML bundle (converted on Linux; it cannot run here, its manifest is what matters)."""
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    dest = cache / f"{rb.MODEL}-coreml-coreml-fp16"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (dest / "manifest.json").is_file():
            convert(rb.make_model(), "coreml", ConvertOptions(), cache, labels=rb.LABELS, show_progress=False)
    return dest


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, Path]:
    cache = rb.session_cache(tmp_path_factory)
    bundles = rb.build_bundles(cache)
    return {"executorch": bundles["executorch"], "tflite": bundles["tflite"],
            "tflite_nhwc": bundles["tflite_nhwc"], "coreml": _coreml_bundle(cache)}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return rb.write_pngs(tmp_path_factory.mktemp("img"), n=1)[0]


def leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every field, containers included: `input`, `input.mean`, `input.mean[0]`, ..."""
    if path:
        yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list) and path.endswith(("shape", "mean", "std")):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{path}[{i}]")


def _free(path: str) -> bool:
    return any(path == f or path.startswith(f if f.endswith(".") else f + ".") or path.startswith(f + "[")
               for f in FREE) and path not in ("report", "toolchain", "model.config", "model.deploy", "conversion")


def mutations(manifest: dict[str, Any]) -> Iterator[tuple[str, str, Any, bool]]:
    """(path, kind, new value or REMOVE, must_fail). Every field: removed, retyped, out of range."""
    for path, value in leaves(manifest):
        if _free(path) or path in ("parity",):
            if path == "parity":
                yield path, "retyped", "passed", True
            continue
        if "[" not in path.rsplit(".", 1)[-1]:
            yield path, "removed", REMOVE, path not in OPTIONAL
        yield path, "retyped", _retype(value), True
        bad = _out_of_range(path, value)
        if bad is not NONE:
            yield path, "out of range", bad, path not in FREE_STRINGS or bad == ""


REMOVE, NONE = object(), object()


def _retype(value: Any) -> Any:
    """A value of a type the field never takes."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 12345
    if value is None:
        return {"not": "null"}
    return "not-a-" + type(value).__name__


def _out_of_range(path: str, value: Any) -> Any:
    """A value of the right type that is impossible for this field (NONE when the type has no range)."""
    if isinstance(value, bool) or value is None:
        return NONE
    if path.endswith("zero_point"):
        return 100000
    if path == "schema_version":
        return 7
    if isinstance(value, int):
        return -7
    if isinstance(value, float):
        return math.inf if not path.endswith("scale") else -0.5
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return value[:-1] if value else [1]
    return NONE


def apply(manifest: dict[str, Any], path: str, new: Any) -> dict[str, Any]:
    m = copy.deepcopy(manifest)
    keys = [k for part in path.split(".") for k in _split_index(part)]
    node = m
    for k in keys[:-1]:
        node = node[k]
    if new is REMOVE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = new
    return m


def _split_index(part: str) -> list[Any]:
    if "[" not in part:
        return [part]
    name, idx = part[:-1].split("[")
    return [name, int(idx)]


def check_outcome(res: Any, must_fail: bool, field: str, what: str) -> None:
    """exit 0, or exit 1 with exactly one `error:` line on stderr; never an uncaught exception."""
    assert res.exception is None or isinstance(res.exception, SystemExit), f"{what}: {res.exception!r}"
    assert "Traceback" not in res.output + res.stderr, what
    if must_fail:
        assert res.exit_code == 1, f"{what}: exit {res.exit_code}\n{res.output}"
    assert res.exit_code in (0, 1), f"{what}: exit {res.exit_code}: {res.stderr}"
    if res.exit_code == 1:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: {res.stderr!r}"
        if must_fail and field:
            assert field in lines[0], f"{what}: the error does not name {field}: {lines[0]}"


def _work_copy(src: Path, dst: Path) -> tuple[Path, dict[str, Any]]:
    rb.copy_bundle(src, dst)
    return dst, json.loads((dst / "manifest.json").read_text())


def _named_field(path: str, kind: str) -> str:
    """What the error line must name: the field, or (schema) the version."""
    return path


@pytest.mark.parametrize("kind", ["executorch", "tflite", "tflite_nhwc", "coreml"])
def test_every_field_removed_retyped_out_of_range(real, image, tmp_path, kind):
    bundle, manifest = _work_copy(real[kind], tmp_path / kind)
    runner = CliRunner()
    cases = list(mutations(manifest))
    assert len(cases) > 60, len(cases)  # every field, three ways
    failing = 0
    for path, how, new, must_fail in cases:
        (bundle / "manifest.json").write_text(json.dumps(apply(manifest, path, new)))
        field = _named_field(path, how) if must_fail else ""
        for args in (["predict", str(bundle), str(image)], ["validate", str(bundle)]):
            res = runner.invoke(cli, args)
            check_outcome(res, must_fail, field, f"{args[0]} {kind}: {path} {how} -> {new!r}")
        failing += must_fail
    assert failing > 50
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert runner.invoke(cli, ["validate", str(bundle)]).exit_code == 0  # the unmutated copy is fine


@pytest.mark.parametrize("kind", ["executorch", "tflite"])
def test_bench_refuses_bad_manifests_before_spawning(real, tmp_path, kind):
    """bench reads every bundle before any worker starts: one line, exit 1 (a sample of field mutations)."""
    bundle, manifest = _work_copy(real[kind], tmp_path / kind)
    cases = [c for c in mutations(manifest) if c[3]][::7]
    assert len(cases) >= 10
    for path, how, new, _ in cases:
        (bundle / "manifest.json").write_text(json.dumps(apply(manifest, path, new)))
        res = CliRunner().invoke(cli, ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--quiet"])
        check_outcome(res, True, path, f"bench {kind}: {path} {how} -> {new!r}")


LABEL_CASES = {
    "missing": None,
    "one too few": "\n".join(rb.LABELS[:-1]) + "\n",
    "one too many": "\n".join(rb.LABELS + ["extra"]) + "\n",
    "empty": "",
    "not UTF-8": b"\xff\xfe\x00l\x00a\x00b\x00e\x00l\x00\n",
}
LABEL_WORDS = {"missing": "missing", "one too few": "9 labels", "one too many": "11 labels", "empty": "0 labels",
               "not UTF-8": "not UTF-8"}


@pytest.mark.parametrize("case", list(LABEL_CASES))
@pytest.mark.parametrize("command", ["predict", "validate", "bench"])
def test_labels_file_problems(real, image, tmp_path, case, command):
    bundle = rb.copy_bundle(real["tflite"], tmp_path / "b")
    content = LABEL_CASES[case]
    if content is None:
        (bundle / "labels.txt").unlink()
    elif isinstance(content, bytes):
        (bundle / "labels.txt").write_bytes(content)
    else:
        (bundle / "labels.txt").write_text(content)
    args = {"predict": ["predict", str(bundle), str(image)], "validate": ["validate", str(bundle)],
            "bench": ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--quiet"]}[command]
    res = CliRunner().invoke(cli, args)
    check_outcome(res, True, "labels.txt", f"{command}: labels.txt {case}")
    assert LABEL_WORDS[case] in res.stderr


def test_mutation_helpers():
    m = {"input": {"crop": 64, "mean": [0.5, 0.5, 0.5]}, "labels": None}
    paths = [p for p, _ in leaves(m)]
    assert paths == ["input", "input.crop", "input.mean", "input.mean[0]", "input.mean[1]", "input.mean[2]", "labels"]
    assert apply(m, "input.mean[1]", math.inf)["input"]["mean"] == [0.5, math.inf, 0.5]
    assert "crop" not in apply(m, "input.crop", REMOVE)["input"] and m["input"]["crop"] == 64
