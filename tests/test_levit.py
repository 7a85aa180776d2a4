"""LeViT family: published sizes, attention maths, distillation heads, deploy-time bias caching, export rules."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edge_sdk.errors import UsageError
from edge_sdk.models import count_macs, count_params, create_model, get_entry, list_models, reparameterize_model
from edge_sdk.models.levit import LeViT, LeViTAttention, relative_offsets
from model_helpers import calibrated

torch.set_num_threads(1)

PUBLISHED_MACS_M = {"levit_128s": 305, "levit_128": 406, "levit_192": 658, "levit_256": 1120, "levit_384": 2353}
BANNED_OPS = ("unfold", "im2col", "col2im", "group_norm", "layer_norm")


def _exported_ops_and_max_rank(model: torch.nn.Module, x: tuple[torch.Tensor, ...]) -> tuple[set[str], int]:
    ep = torch.export.export(model, x)
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    rank = max(n.meta["val"].dim() for n in ep.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor))
    return ops, rank


def test_registry_lists_all_variants():
    assert set(PUBLISHED_MACS_M) | {"levit_tiny"} == set(list_models("levit*"))
    assert get_entry("levit_tiny").tiny and not get_entry("levit_128s").tiny


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS_M))
def test_params_and_macs_match_published(name):
    model = create_model(name)
    published = get_entry(name).published_params
    assert abs(count_params(model) / 1e6 / published - 1) < 0.05
    assert abs(count_macs(model) / 1e6 / PUBLISHED_MACS_M[name] - 1) < 0.05
    assert model.has_dist_head and model.deploy.input_size == 224 and model.deploy.crop_pct == 0.9


def test_tiny_variant_is_small_and_has_a_shrink_attention():
    model = create_model("levit_tiny")
    assert count_params(model) < 100_000
    shrinks = [m for m in model.modules() if isinstance(m, LeViTAttention) and m.stride == 2]
    assert len(shrinks) == 1
    assert [n for n, _ in model.stages()] == ["stem", "stage0", "stage1"]


def test_forward_shapes_and_features_are_4d():
    model = create_model("levit_tiny", num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, 24, 2, 2)  # 64/16 = 4 tokens per side, one shrink to 2
    assert model(x).shape == (2, 7)


def test_relative_offsets_index_table():
    idx = relative_offsets(3)
    assert idx.shape == (9, 9)
    assert torch.equal(idx, idx.T) and (idx.diagonal() == 0).all()
    assert idx[0, 8] == 2 * 3 + 2  # (0,0) -> (2,2)
    strided = relative_offsets(3, stride=2)  # queries at (0,0), (0,2), (2,0), (2,2)
    assert strided.shape == (4, 9)
    assert strided[3, 8] == 0 and strided[3, 0] == 8
    assert int(idx.max()) < 9


def _naive_attention(attn: LeViTAttention, x: torch.Tensor) -> torch.Tensor:
    """Per-head loop over explicitly subsampled queries, bias looked up pixel by pixel."""
    b, _, h, w = x.shape
    s = attn.stride
    q = attn.q.bn(F.conv2d(x[:, :, ::s, ::s], attn.q.conv.weight))  # subsample, then project
    k, v = attn.k(x).flatten(2), attn.v(x).flatten(2)
    q = q.flatten(2)
    heads, kd, dv = attn.heads, attn.key_dim, attn.val_dim
    outs = []
    for i in range(heads):
        qi, ki, vi = q[:, i * kd:(i + 1) * kd], k[:, i * kd:(i + 1) * kd], v[:, i * dv:(i + 1) * dv]
        scores = qi.transpose(1, 2) @ ki * kd ** -0.5 + attn.bias_table[i][attn.bias_idx]
        outs.append(vi @ scores.softmax(-1).transpose(1, 2))
    out = torch.cat(outs, 1).reshape(b, heads * dv, (h - 1) // s + 1, (w - 1) // s + 1)
    return attn.proj(out)


@pytest.mark.parametrize("stride", [1, 2])
def test_attention_matches_naive_per_head_loop(stride):
    torch.manual_seed(0)
    attn = LeViTAttention(16, 24, key_dim=4, heads=2, attn_ratio=2, resolution=5, stride=stride).eval()
    x = torch.randn(2, 16, 5, 5)
    out = attn(x)
    assert out.shape == (2, 24, 3 if stride == 2 else 5, 3 if stride == 2 else 5)
    torch.testing.assert_close(out, _naive_attention(attn, x), rtol=1e-5, atol=1e-5)


def test_bias_tables_start_small_but_nonzero():
    model = create_model("levit_tiny")
    tables = [m.bias_table for m in model.modules() if isinstance(m, LeViTAttention)]
    assert tables and all((t != 0).all() and t.abs().max() < 0.2 for t in tables)


def test_reparameterize_caches_bias_and_keeps_outputs():
    model = calibrated("levit_tiny")
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    fused = reparameterize_model(model)
    torch.testing.assert_close(fused(x), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    attns = [m for m in fused.modules() if isinstance(m, LeViTAttention)]
    assert [tuple(m.attention_bias().shape) for m in attns] == [(2, 16, 16), (2, 4, 16), (3, 4, 4)]
    assert not any(hasattr(m, "bias_table") for m in attns)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())  # head BN folded into Linear
    ops, rank = _exported_ops_and_max_rank(fused, (x,))
    assert rank <= 4
    assert not any("index" in o or "gather" in o for o in ops), ops
    assert not any(b in o for o in ops for b in BANNED_OPS)


def test_export_unfused_model_keeps_rank_4():
    model = create_model("levit_tiny").eval()
    ops, rank = _exported_ops_and_max_rank(model, model.example_inputs(1))
    assert rank <= 4 and not any(b in o for o in ops for b in BANNED_OPS)


def test_distillation_tuple_in_training_and_average_in_eval():
    model = calibrated("levit_tiny", num_classes=5)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = feats.mean(dim=(2, 3))
        expected = (model.head(pooled) + model.head_dist(pooled)) / 2
        torch.testing.assert_close(model(x), expected)
    model.train()
    assert model(x).shape == (3, 5)  # distillation training off: still the average
    model.set_distilled_training(True)
    cls_logits, dist_logits = model(x)
    assert cls_logits.shape == dist_logits.shape == (3, 5)
    assert not torch.allclose(cls_logits, dist_logits)
    model.eval()
    assert isinstance(model(x), torch.Tensor)


def test_distillation_can_be_disabled():
    model = create_model("levit_tiny", distillation=False)
    assert model.head_dist is None and not model.has_dist_head
    with pytest.raises(ValueError):
        model.set_distilled_training(True)


def test_one_distillation_training_step_changes_weights():
    torch.manual_seed(0)
    model = create_model("levit_tiny", num_classes=4)
    model.train()
    model.set_distilled_training(True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    teacher = torch.tensor([1, 1, 2, 2])
    before = model.body.stage1[0].bias_table.detach().clone()
    cls_logits, dist_logits = model(x)
    loss = (F.cross_entropy(cls_logits, y) + F.cross_entropy(dist_logits, teacher)) / 2
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.body.stage1[0].bias_table)


@pytest.mark.parametrize("bad", [{"input_size": 72}, {"dims": (20, 24)}, {"heads": (2,)}])
def test_invalid_configs_are_usage_errors(bad):
    with pytest.raises(UsageError):
        create_model("levit_tiny", **bad)


def test_input_size_override_rebuilds_bias_index():
    model = create_model("levit_tiny", input_size=96).eval()
    assert isinstance(model, LeViT)
    assert model(torch.randn(1, 3, 96, 96)).shape == (1, 1000)
