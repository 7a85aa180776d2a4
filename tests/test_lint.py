"""`edge-sdk lint` and `--fix` on small models that each use one pattern, and on every zoo tiny model.

Per pattern: the op XNNPACK leaves outside, the reason, the user's file:line, the --fix rule that is offered, then
the fix itself (each rewrite within 1e-5 of the output scale on decoded images and random inputs) and a clean
ExecuTorch lint afterwards (one subgraph, nothing outside).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_sdk.converters.lint import lint_model
from edge_sdk.converters.lint.fix import PARITY_LIMIT, _try, fix_model, outputs, parity_inputs
from edge_sdk.converters.lint.rewrites import ALL_RULES, Rule
from edge_sdk.converters.sources import SourceOptions, resolve_source

ASSETS = Path(__file__).parent / "assets" / "byom"
PATTERNS = ASSETS / "patterns.py"
DEPLOY = dict(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
EDGE = [str(Path(sys.executable).with_name("edge-sdk"))]

# pattern -> (ops XNNPACK leaves outside, a snippet of the user's line they come from, the rule that fixes it)
CASES = {
    "groupnorm1": ({"native_group_norm"}, "self.conv(self.norm(x))", "module_norms"),
    "layernorm_channels": ({"native_layer_norm"}, "F.layer_norm(x.permute(0, 2, 3, 1)", "module_norms"),
    "mha": ({"select_copy", "squeeze_copy", "unsqueeze_copy"}, "self.attn(t, t, t", "mha_to_matmul"),
    "sdpa": ({"expand_copy", "mul", "eq", "any", "where", "logical_not", "full_like"},
             "F.scaled_dot_product_attention(q, k, v)", "sdpa_to_matmul"),
    "expand_as": ({"expand_copy"}, "ctx.expand_as(x)", "expand_to_broadcast"),
    "sum_tokens": ({"sum"}, ".sum(dim=-1, keepdim=True)", "sum_to_mean"),
    "split_projection": ({"split_with_sizes_copy"}, ".split([1, c, c], dim=1)", "split_to_projections"),
    "matmul4d": ({"expand_copy"}, "(q @ k.transpose(-2, -1))", "matmul_to_bmm"),
    "int_constant": ({"_to_dim_order_copy"}, "/ torch.tensor(2)", "fold_constants"),
    "mqa": ({"expand_copy", "mul", "eq", "any", "where", "logical_not", "full_like"},
            "F.scaled_dot_product_attention(query=q, key=k, value=v)", "sdpa_to_matmul"),
}


def source_line(snippet: str) -> int:
    lines = PATTERNS.read_text().splitlines()
    hits = [i + 1 for i, ln in enumerate(lines) if snippet in ln]
    assert len(hits) == 1, snippet
    return hits[0]


def pattern(name: str) -> torch.nn.Module:
    return resolve_source(f"{PATTERNS}:{name}", SourceOptions(**DEPLOY)).model


@pytest.mark.parametrize("name", sorted(CASES))
def test_lint_names_op_reason_line_and_fix_then_fix_is_exact_and_clean(name: str) -> None:
    ops, snippet, rule = CASES[name]
    model = pattern(name)
    before = lint_model(model, ("executorch",))["targets"]["executorch"]
    assert not before["clean"] and before["subgraphs"] >= 1
    hits = [f for f in before["findings"] if f["op"] in ops]
    assert hits, before["outside_by_op"]
    line = source_line(snippet)
    f = next((h for h in hits if h["where"]["line"] == line), None)
    assert f is not None, [(h["op"], h["where"]) for h in hits]
    assert Path(f["where"]["file"]).name == "patterns.py" and f["where"]["module"].startswith("body")
    assert f["reason"].startswith("XNNPACK") and f["edge_rule"] in ("1", "2", "3", "4")
    assert rule in f["fix"] or rule in lint_fixes(before), f["fix"]

    result = fix_model(model)
    applied = {a["rule"]: a for a in result.applied}
    assert rule in applied, (result.applied, result.refused)
    assert all(a["max_abs_ratio"] <= PARITY_LIMIT for a in result.applied)
    assert result.parity["passed"] and result.parity["max_abs_ratio"] <= PARITY_LIMIT
    after = lint_model(result.model, ("executorch",))["targets"]["executorch"]
    assert after["clean"] and after["subgraphs"] == 1 and after["outside_ops"] == 0, after["outside_by_op"]
    assert after["delegated_share_macs"] == 1.0
    # the fixed model computes the same function on decoded images
    inputs = parity_inputs(model.deploy)
    ref, out = outputs(model.eval(), inputs), outputs(result.model, inputs)
    assert max(np.abs(r - o).max() / np.abs(r).max() for r, o in zip(ref, out)) <= PARITY_LIMIT


def lint_fixes(report: dict) -> set[str]:
    return {x for f in report["findings"] for x in f["fix"]}


def test_sum_over_tokens_flags_the_rank4_softmax_xnnpack_computes_wrongly() -> None:
    report = lint_model(pattern("sum_tokens"), ("executorch",))["targets"]["executorch"]
    wrong = [f for f in report["findings"] if f.get("delegated")]
    assert report["delegated_but_wrong"] == 1 and wrong[0]["op"] == "_softmax"
    assert wrong[0]["fix"] == ["softmax4d_to_rank3"]
    assert wrong[0]["where"]["line"] == source_line("torch.softmax(self.query(t), dim=-1)")


def test_linear_on_nhwc_becomes_conv_and_tflite_transposes_go() -> None:
    model = pattern("linear4d")
    before = lint_model(model, ("executorch", "tflite"))["targets"]
    assert before["executorch"]["clean"]  # XNNPACK takes Linear on any rank; the cost is TFLite's layout
    assert before["tflite"]["internal_transpose_count"] >= 1
    t = next(f for f in before["tflite"]["findings"] if f["op"] == "TRANSPOSE")
    assert "linear4d_to_conv1x1" in t["fix"] and t["where"]["module"].startswith("body")
    gelu = next(f for f in before["tflite"]["findings"] if f["op"] == "GELU")
    assert "NNAPI" in gelu["reason"] and gelu["fix"] == []  # rule 5: report only
    result = fix_model(model)
    assert {"linear4d_to_conv1x1", "cancel_permutes"} <= {a["rule"] for a in result.applied}
    after = lint_model(result.model, ("tflite",))["targets"]["tflite"]
    assert after["internal_transpose_count"] == 0 and after["op_histogram"].get("FULLY_CONNECTED", 0) == 1


def test_a_rewrite_that_changes_the_function_is_refused_with_the_reason() -> None:
    model = pattern("groupnorm1")
    net = torch.export.export(model.net, (torch.randn(1, 3, 32, 32),)).module()

    def relu_to_sigmoid(gm: torch.fx.GraphModule) -> list[str]:
        hits = [n for n in gm.graph.nodes if n.target == torch.ops.aten.relu.default]
        for n in hits:
            n.target = torch.ops.aten.sigmoid.default
        gm.recompile()
        return [n.name for n in hits]

    inputs = parity_inputs(model.deploy)
    new, record = _try(Rule("bad", "graph", relu_to_sigmoid, "changes the function", "-"), net,
                       torch.randn(1, 3, 32, 32), outputs(net, inputs), inputs)
    assert new is None and record["reason"].startswith("outputs changed by") and record["max_abs_ratio"] > 1e-3


def test_every_rule_is_named_and_documented() -> None:
    for name, rule in ALL_RULES.items():
        assert rule.name == name and rule.apply.__doc__ and len(rule.apply.__doc__) > 80
    doc = (Path(__file__).parents[1] / "docs" / "byom.md").read_text()
    assert all(f"`{name}`" in doc for name in ALL_RULES)


def tiny_models() -> list[str]:
    from edge_sdk.models import get_entry, list_models
    names = [n for n in list_models() if get_entry(n).tiny]
    return names + [n for n in ("efficientnet_lite0",) if n in list_models()]


@pytest.mark.parametrize("name", tiny_models())
def test_zoo_models_lint_clean_on_every_target(name: str) -> None:
    from edge_sdk.models import create_model
    report = lint_model(create_model(name, num_classes=10), ("executorch", "tflite", "coreml"))
    s, t = report["summary"], report["targets"]
    assert t["executorch"]["subgraphs"] == 1 and t["executorch"]["outside_ops"] == 0
    assert t["tflite"]["internal_transpose_count"] == 0 and t["tflite"]["gpu_compatible"]
    assert t["coreml"]["ane_ready"]
    assert s["clean"], json.dumps([f for r in t.values() for f in r["findings"]], default=str)[:2000]


def test_cli_exit_codes_json_and_fix_output(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = lambda *a: subprocess.run(EDGE + list(a), capture_output=True, text=True, env=env, timeout=900)  # noqa
    clean = run("lint", "levit_tiny", "--target", "executorch", "--json")
    assert clean.returncode == 0 and json.loads(clean.stdout)["summary"]["clean"] is True
    bad = run("lint", "levit_tiny", "--target", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")
    out = tmp_path / "fixed.pt2"
    r = run("lint", f"{PATTERNS}:groupnorm1", "--input-size", "32", "--mean", "0.5,0.5,0.5", "--std",
            "0.25,0.25,0.25", "--target", "executorch", "--fix", str(out), "--no-latency", "--json")
    assert r.returncode == 0, r.stderr[-2000:]  # findings before, none after the fix
    report = json.loads(r.stdout)
    assert report["summary"]["ops_outside_xnnpack"] == 1
    rows = {row["metric"]: row for row in report["fix"]["before_after"]}
    assert rows["XNNPACK subgraphs"]["before"] == 2 and rows["XNNPACK subgraphs"]["after"] == 1
    assert out.is_file() and out.with_suffix(".lint.json").is_file() and out.with_suffix(".lint.md").is_file()
    # the fixed .pt2 carries its deploy settings: convert needs no options
    src = resolve_source(out)
    assert src.model.deploy.mean == (0.5, 0.5, 0.5) and src.model.config_dict()["rewrites"]
    lint_after = run("lint", str(out), "--target", "executorch", "--json")
    assert lint_after.returncode == 0 and json.loads(lint_after.stdout)["summary"]["xnnpack_subgraphs"] == 1
    findings = run("lint", f"{PATTERNS}:groupnorm1", "--input-size", "32", "--target", "executorch")
    assert findings.returncode == 1 and "native_group" in findings.stdout


def pt2_pattern(name: str, tmp_path: Path) -> torch.nn.Module:
    """The pattern as a `.pt2` someone else exported: only the graph rules can see it (no module types)."""
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(pattern(name).net, (torch.randn(1, 3, 32, 32),)), str(path))
    return resolve_source(path, SourceOptions(**DEPLOY)).model


def test_groupnorm1_graph_rule_takes_the_spatial_mean_first_and_is_exact(tmp_path: Path) -> None:
    model = pt2_pattern("groupnorm1", tmp_path)
    result = fix_model(model)
    applied = {a["rule"]: a for a in result.applied}
    assert "groupnorm1_to_edge" in applied and len(applied["groupnorm1_to_edge"]["sites"]) == 1, result.refused
    assert result.parity["max_abs_ratio"] <= PARITY_LIMIT
    gm = result.program.graph_module
    norm_convs = [n for n in gm.graph.nodes if n.target == torch.ops.aten.conv2d.default
                  and tuple(n.args[0].meta["val"].shape[2:]) == (1, 1)]
    # both statistics: a 1/C conv on the (1, C, 1, 1) spatial mean, not a one-channel GEMM over the 16x16 map
    assert len(norm_convs) == 2 and all(tuple(n.meta["val"].shape) == (1, 1, 1, 1) for n in norm_convs)
    after = lint_model(result.model, ("executorch",))["targets"]["executorch"]
    assert after["subgraphs"] == 1 and after["outside_ops"] == 0


@pytest.mark.parametrize("groups", [1, 4])
def test_groupnorm_edge_module_equals_nn_groupnorm(groups: int) -> None:
    from edge_sdk.converters.lint.norms import GroupNormEdge, make_edge_norm
    torch.manual_seed(1)
    ref = torch.nn.GroupNorm(groups, 16)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    new = make_edge_norm("group", 16, ref.eps, True, groups)
    assert isinstance(new, GroupNormEdge)
    new.load_state_dict(ref.state_dict())
    x = torch.randn(2, 16, 7, 5) * 3 + 2  # a mean far from 0: the variance is taken around it, not as E[x^2]-m^2
    with torch.no_grad():
        assert (new(x) - ref(x)).abs().max().item() <= 1e-5 * ref(x).abs().max().item()
