"""Hybrid families (pbhybrid, cctt) and the shared ReLU linear attention."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edge_sdk.errors import UsageError
from edge_sdk.models import count_params, create_model, get_entry, list_models, reparameterize_model
from edge_sdk.models.hybrid import BranchGate, ParallelBranches
from edge_sdk.models.layers import ReLULinearAttention
from edge_sdk.models.levit import LeViTAttention
from model_helpers import calibrated

torch.set_num_threads(1)

MICRO = ["pbhybrid_micro", "cctt_micro"]
# (min, max) params in millions at 1000 classes, from the task's size classes.
SIZES = {"pbhybrid_tiny": (0.5, 1.5), "pbhybrid_small": (4.0, 6.0), "cctt_tiny": (1.0, 2.0), "cctt_small": (5.0, 8.0)}
BANNED_OPS = ("unfold", "im2col", "col2im", "group_norm", "layer_norm", "index", "gather")


def _naive_relu_attention(attn: ReLULinearAttention, x: torch.Tensor) -> torch.Tensor:
    """O(N^2): build the (N, N) ReLU-kernel score matrix per head, then normalise each query's row."""
    b, _, h, w = x.shape
    n, d = h * w, attn.key_dim
    q, k, v = attn.q(x).flatten(2), attn.k(x).flatten(2), attn.v(x).flatten(2)  # (B, heads*d, N), q/k post-ReLU
    outs = []
    for i in range(attn.heads):
        qi, ki, vi = (t[:, i * d:(i + 1) * d] for t in (q, k, v))
        scores = qi.transpose(1, 2) @ ki  # (B, Nq, Nk)
        out = vi @ scores.transpose(1, 2) / (scores.sum(-1).unsqueeze(1) + attn.eps * n)  # (B, d, Nq)
        outs.append(out)
    return attn.proj(torch.cat(outs, 1).reshape(b, -1, h, w))


@pytest.mark.parametrize("hw", [(4, 4), (3, 5)])
def test_relu_linear_attention_equals_naive_quadratic_form(hw):
    torch.manual_seed(0)
    attn = ReLULinearAttention(16, heads=2, key_dim=8).eval()
    x = torch.randn(2, 16, *hw)
    out = attn(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, _naive_relu_attention(attn, x), rtol=1e-4, atol=1e-5)


def test_relu_linear_attention_kernel_is_nonnegative():
    attn = ReLULinearAttention(8, heads=1, key_dim=8).eval()
    x = torch.randn(1, 8, 4, 4)
    assert (attn.q(x) >= 0).all() and (attn.k(x) >= 0).all()


def test_branch_gate_is_a_convex_mix():
    torch.manual_seed(0)
    gate = BranchGate(8).eval()
    a, b = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(gate(a, a), a)
    w = gate.fc((a + b).mean(dim=(2, 3), keepdim=True))
    assert ((w >= 0) & (w <= 1)).all()
    torch.testing.assert_close(gate(a, b), w * a + (1 - w) * b)


def test_registry_lists_hybrids():
    assert set(list_models("pbhybrid*")) == {"pbhybrid_micro", "pbhybrid_tiny", "pbhybrid_small"}
    assert set(list_models("cctt*")) == {"cctt_micro", "cctt_tiny", "cctt_small"}
    for name in MICRO:
        entry = get_entry(name)
        assert entry.tiny and entry.deploy.input_size == 64 and entry.published_params is None


@pytest.mark.parametrize("name", sorted(SIZES))
def test_standard_variants_are_in_their_size_class(name):
    lo, hi = SIZES[name]
    model = create_model(name)
    assert lo <= count_params(model) / 1e6 <= hi
    assert not get_entry(name).tiny and model.deploy.input_size == 224


@pytest.mark.parametrize("name", MICRO)
def test_micro_forward_shapes(name):
    model = create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.dim() == 4 and feats.shape[0] == 2 and feats.shape[2:] == (2, 2)  # stride 32
    assert model(x).shape == (2, 10)
    assert count_params(create_model(name)) < 100_000
    assert [n for n, _ in model.stages()][:5] == ["stem", "stage0", "stage1", "stage2", "stage3"]


def test_pbhybrid_blocks_have_both_branches():
    model = create_model("pbhybrid_micro")
    blocks = [m for m in model.modules() if isinstance(m, ParallelBranches)]
    assert len(blocks) == 3  # attn_from=1: stages 1-3, one block each
    assert all(isinstance(b.attn, ReLULinearAttention) for b in blocks)


def test_cctt_attention_types_follow_config():
    model = create_model("cctt_micro")
    assert isinstance(model.stage2[1][1].m, ReLULinearAttention)
    assert isinstance(model.stage3[1][1].m, LeViTAttention)
    linear = create_model("cctt_micro", attn_types=("linear", "linear"))
    assert not any(isinstance(m, LeViTAttention) for m in linear.modules())
    with pytest.raises(UsageError):
        create_model("cctt_micro", attn_types=("linear", "full"))
    with pytest.raises(UsageError):
        create_model("cctt_micro", input_size=80)


@pytest.mark.parametrize("name", MICRO)
def test_reparameterize_keeps_outputs_and_export_is_edge_clean(name):
    model = calibrated(name)
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    fused = reparameterize_model(model)
    torch.testing.assert_close(fused(x), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    ep = torch.export.export(fused, (x,))
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any(b in o for o in ops for b in BANNED_OPS), ops
    ranks = [n.meta["val"].dim() for n in ep.graph.nodes if isinstance(n.meta.get("val"), torch.Tensor)]
    assert max(ranks) <= 4


@pytest.mark.parametrize("name", MICRO)
def test_one_training_step(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, drop_path=0.1)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed > 0.9 * len(before)  # gradients reach (almost) every tensor: no dead branch
