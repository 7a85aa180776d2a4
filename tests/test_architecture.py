"""The shape of the code: no import cycle, the target table is the one source of CLI choices and defaults, and a new
target is one module plus one line."""
from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_sdk.cli import cli
from edge_sdk.converters import targets as targets_mod
from edge_sdk.converters.base import ConvertOptions
from edge_sdk.converters.pipeline import plan

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"edge_sdk": ROOT / "edge_sdk", "edge_sdk.models": ROOT / "models", "edge_sdk.converters": ROOT / "converters"}


# ---- no import cycle -----------------------------------------------------------------------------------------------

def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if pkg == "edge_sdk" and parts and parts[0] in ("models", "converters"):
                continue
            mods[".".join([pkg, *parts])] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> edge_sdk modules it imports ANYWHERE (top level or inside functions: a lazy import is still a
    dependency, and lazy imports were how the old registries hid their cycles)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        base = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                pkg = base.split(".")
                module = ".".join(pkg[:len(pkg) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module
                subs = {f"{module}.{a.name}" for a in node.names} & set(mods)
                deps.update(subs)
                if len(subs) < len(node.names):
                    deps.add(module)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 60  # the walk really covers edge_sdk, models/ and converters/
    assert "edge_sdk.models.registry" in graph["edge_sdk.models"]  # edges of `from .x import y` are seen
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_registries_are_leaves():
    graph = import_graph()
    families = {m for m in graph if m.startswith("edge_sdk.models.")} & {
        f"edge_sdk.models.{n}" for n in ("levit", "mobilevit", "mobilevitv2", "hybrid")}
    assert not graph["edge_sdk.models.registry"] & (families | {"edge_sdk.models.families"})
    target_modules = {m for m in targets_mod.TARGET_MODULES}
    assert not graph["edge_sdk.converters.base"] & (target_modules | {"edge_sdk.converters.targets"})


# ---- the target table is the one source ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["executorch", "coreml", "tflite"])
def test_default_precision_same_in_library_and_cli(name, monkeypatch, tmp_path):
    """`convert(model, t, ConvertOptions(), out)` and `edge-sdk convert MODEL --target t` plan the same bundle."""
    seen = {}

    def fake_convert(model, target, opts, out_dir, **kw):
        seen["plan"] = plan(target, opts)
        return []

    monkeypatch.setattr("edge_sdk.converters.pipeline.convert", fake_convert)
    res = CliRunner().invoke(cli, ["convert", "levit_tiny", "--target", name, "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    ((t_cli, cli_opts),) = seen["plan"]
    ((t_lib, lib_opts),) = plan(name, ConvertOptions())
    assert t_cli is t_lib and cli_opts == lib_opts
    assert lib_opts.precision == t_lib.precisions[0] == {"executorch": "fp32", "coreml": "fp16", "tflite": "fp32"}[name]
    assert lib_opts.backend == t_lib.backends[0]


def test_target_all_uses_every_default():
    jobs = plan("all", ConvertOptions())
    assert [(t.name, o.precision, o.backend) for t, o in jobs] == [
        ("executorch", "fp32", "xnnpack"), ("coreml", "fp16", "coreml"), ("tflite", "fp32", "litert")]


def test_cli_choices_come_from_the_table():
    res = CliRunner().invoke(cli, ["convert", "--help"])
    assert res.exit_code == 0
    table = targets_mod.load_targets()
    for t in table.values():
        assert t.name in res.output and t.suffix in res.output and t.description[:40] in res.output
        for backend in t.backends:
            assert f"--backend {backend:<8} {', '.join(t.precisions_for(backend))}" in res.output
    res = CliRunner().invoke(cli, ["convert", "levit_tiny", "--target", "tflite", "--precision", "fp61"])
    assert res.exit_code == 2 and "did you mean" in res.output


THROWAWAY = '''
"""A throwaway target for tests: writes a text file, cannot run it."""
from __future__ import annotations
from pathlib import Path
from edge_sdk.converters.base import Artifact, Target, step
from edge_sdk.manifest import InputSpec, OutputSpec


class ThrowawayTarget(Target):
    name = "throwaway"
    suffix = ".txt"
    description = "a throwaway test format (one line of text)"
    backends = ("paper", "slate")
    precisions = ("int4", "fp32")

    def can_run(self):
        return False, "throwaway files do not run"

    def summary(self, report):
        return f"{report['lines']} line"

    def export(self, model, example, opts, out_dir, calib):
        opts = self.resolve(opts)
        with step("serialize", "model.txt"):
            (Path(out_dir) / "model.txt").write_text(f"{opts.precision} {opts.backend}\\n")
        shape = tuple(example.shape)
        return Artifact(file="model.txt", backend=opts.backend,
                        input=InputSpec.from_deploy(model.deploy, shape=shape),
                        output=OutputSpec(shape=(1, model.num_classes)), report={"lines": 1})


TARGET = ThrowawayTarget()
'''


def test_a_new_target_is_one_module_and_one_line(tmp_path, monkeypatch):
    (tmp_path / "throwaway_target.py").write_text(textwrap.dedent(THROWAWAY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(targets_mod, "TARGET_MODULES", targets_mod.TARGET_MODULES + ("throwaway_target",))
    res = CliRunner().invoke(cli, ["convert", "--help"])
    assert res.exit_code == 0
    assert "throwaway   .txt" in res.output and "a throwaway test format" in res.output
    assert "--backend paper    int4, fp32" in res.output and "int4" in res.output.split("-p, --precision")[1]
    out = tmp_path / "bundles"
    res = CliRunner().invoke(cli, ["convert", "levit_tiny", "--num-classes", "3", "--target", "throwaway",
                                   "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output[res.output.index("["):])
    assert Path(row["bundle"]).name == "levit_tiny-throwaway-paper-int4"  # defaults: first backend, first precision
    assert row["summary"] == "1 line" and row["parity"]["status"] == "not_run"
    from edge_sdk.bundle import read_bundle
    b = read_bundle(row["bundle"])
    assert (b.manifest.target, b.manifest.precision, b.manifest.input.crop) == ("throwaway", "int4", 64)
    assert b.model_file.read_text() == "int4 paper\n" and b.labels == ("class_0", "class_1", "class_2")
    res = CliRunner().invoke(cli, ["convert", "levit_tiny", "--target", "throwaway", "--backend", "slat"])
    assert res.exit_code == 2 and "did you mean: slate" in res.output
