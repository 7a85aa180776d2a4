"""MobileViT v1 / MobileViTv2 families: published sizes, exact patch transform, attention vs references, export rules."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edge_sdk.errors import UsageError
from edge_sdk.models import count_params, create_model, get_entry, list_models, reparameterize_model
from edge_sdk.models.layers import PatchGrid
from edge_sdk.models.mobilevit import Attention, PatchMixer
from edge_sdk.models.mobilevitv2 import MobileViTv2Config, SeparableAttention

STANDARD = [n for n in list_models("mobilevit*") if not get_entry(n).tiny]
TINY = ["mobilevit_tiny", "mobilevitv2_tiny"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_all_variants_registered():
    assert STANDARD == ["mobilevit_s", "mobilevit_xs", "mobilevit_xxs", "mobilevitv2_050", "mobilevitv2_075",
                        "mobilevitv2_100", "mobilevitv2_125", "mobilevitv2_150", "mobilevitv2_175", "mobilevitv2_200"]
    assert all(get_entry(n).tiny and get_entry(n).published_params is None for n in TINY)
    assert {get_entry(n).family for n in STANDARD} == {"mobilevit", "mobilevitv2"}


@pytest.mark.parametrize("name", STANDARD)
def test_params_match_paper(name):
    params = count_params(create_model(name)) / 1e6
    published = get_entry(name).published_params
    assert abs(params - published) <= 0.05 * published, f"{name}: {params:.3f}M vs {published}M"


def test_mobilevitv2_channels_follow_reference_rounding():
    assert MobileViTv2Config(width=0.5).channels() == (16, 32, 64, 128, 192, 256)
    assert MobileViTv2Config(width=0.5).dims() == (64, 96, 128)
    assert MobileViTv2Config(width=2.0).channels() == (64, 128, 256, 512, 768, 1024)
    assert MobileViTv2Config(width=0.75).channels()[:2] == (24, 48)  # stem clamp/round, layer1 multiple of 16


@pytest.mark.parametrize("p", [2, 3])
@pytest.mark.parametrize("hw", [(4, 6), (6, 12)])
def test_patch_grid_is_exactly_unfold_and_fold(p, hw):
    h, w = hw[0] * p // 2, hw[1] * p // 2
    if h % p or w % p:
        pytest.skip("not a patch multiple")
    x = torch.randn(2, 5, h, w)
    grid = PatchGrid(5, p)
    tokens, g = grid.to_patches(x)
    ref = F.unfold(x, p, stride=p).reshape(2, 5, p * p, -1)  # the reference MobileViT layout (B, C, P, N)
    assert tokens.shape == (2, 5, p * p, (h // p) * (w // p))
    assert torch.equal(tokens, ref)
    y = torch.randn_like(tokens)
    assert torch.equal(grid.from_patches(y, g), F.fold(y.reshape(2, 5 * p * p, -1), (h, w), p, stride=p))
    assert torch.equal(grid.from_patches(tokens, g), x)
    assert not list(grid.parameters()) and not list(grid.buffers())  # pure data movement


def _unfold_mixer_forward(self: PatchMixer, x: torch.Tensor) -> torch.Tensor:
    """The regrouping before the TRANSPOSE-free rewrite, as the paper writes it: F.unfold -> conv_in -> layers ->
    norm -> proj -> F.fold (the old one-hot-conv PatchGrid equalled unfold/fold bit for bit)."""
    b, c, h, w = x.shape
    p = self.grid.patch
    tokens = F.unfold(x, p, stride=p).reshape(b, c, p * p, -1)  # (B, C, P, N)
    y = self.proj(self.norm(self.layers(self.conv_in(tokens))))  # (B, C, P, N)
    return F.fold(y.reshape(b, c * p * p, -1), (h, w), p, stride=p)


@pytest.mark.parametrize("name,source", [("mobilevit_tiny", "trained"), ("mobilevitv2_tiny", "trained"),
                                         ("mobilevit_xxs", "random"), ("mobilevitv2_050", "random")])
def test_model_equals_previous_regrouping_in_float64(name, source, monkeypatch):
    """Same weights, same function as before the rewrite: eval and train mode (BN batch statistics), fp64."""
    if source == "trained":
        from trained import trained_tiny
        model, size = trained_tiny(name), 64
    else:
        model, size = create_model(name, num_classes=10, input_size=128).eval(), 128
    widths = {(m.conv_in.in_channels, m.conv_in.out_channels) for m in model.modules() if isinstance(m, PatchMixer)}
    model = model.double()
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    outs = {}
    for mode in ("eval", "train"):
        model.train(mode == "train")
        with torch.no_grad():
            torch.manual_seed(1)  # same dropout mask in train mode
            outs["new", mode] = model(x)
            with monkeypatch.context() as m:
                m.setattr(PatchMixer, "forward", _unfold_mixer_forward)
                torch.manual_seed(1)
                outs["old", mode] = model(x)
    for mode in ("eval", "train"):
        ref = outs["old", mode]
        assert (outs["new", mode] - ref).abs().max() <= 1e-12 * ref.abs().max(), (mode, widths)
    if name == "mobilevitv2_050":  # v2 regroups the narrower d = C/2 side, v1 xxs the block's C (d > C)
        assert all(d < c for c, d in widths), widths
    if name == "mobilevit_xxs":
        assert all(d > c for c, d in widths), widths


@pytest.mark.parametrize("name", TINY)
def test_trained_checkpoint_keys_unchanged(name):
    """Shipped weights (tests/assets/tiny) still load strictly: no state-dict key or shape changed."""
    from trained import trained_path

    from edge_sdk.models.checkpoint import read_checkpoint, state_dict_of
    state = state_dict_of(read_checkpoint(trained_path(name)), prefer_ema=False)
    model = create_model(name, num_classes=10)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)} == want


def test_patch_grid_rejects_partial_patches():
    with pytest.raises(ValueError, match="not divisible"):
        PatchGrid(3, 2).to_patches(torch.randn(1, 3, 5, 4))


def test_attention_matches_standard_multihead_attention():
    attn = Attention(dim=16, num_heads=4).eval()
    nn.init.normal_(attn.norm.running_mean)
    x = torch.randn(2, 16, 4, 9)  # (B, d, P, N)
    with torch.no_grad():
        out = attn(x)
        y = attn.norm(x)
        seq = lambda conv: conv(y).permute(0, 2, 3, 1).reshape(2, 4, 9, 4, 4).transpose(2, 3)  # (B, P, h, N, dh)
        ref = F.scaled_dot_product_attention(seq(attn.q), seq(attn.k), seq(attn.v))  # (B, P, h, N, dh)
        ref = attn.proj(ref.transpose(2, 3).reshape(2, 4, 9, 16).permute(0, 3, 1, 2))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_separable_attention_matches_paper_formula():
    attn = SeparableAttention(dim=8).eval()
    x = torch.randn(2, 8, 4, 10)
    with torch.no_grad():
        out = attn(x)
        y = attn.norm(x)
        scores = attn.q(y).softmax(dim=-1)  # (B, 1, P, N)
        context = (attn.k(y) * scores).sum(dim=-1, keepdim=True)  # (B, d, P, 1)
        ref = attn.proj(F.relu(attn.v(y)) * context.expand_as(y))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_shapes(name):
    model = create_model(name, num_classes=7).eval()
    assert 20_000 < count_params(model) < 100_000
    x = torch.rand(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.dim() == 4 and feats.shape[0] == 2 and feats.shape[2:] == (2, 2)
    assert model(x).shape == (2, 7)
    assert [n for n, _ in model.stages()][:6] == ["stem", "layer1", "layer2", "layer3", "layer4", "layer5"]


def test_standard_forward_shape_at_other_size():
    model = create_model("mobilevitv2_050", num_classes=10, input_size=128).eval()
    with torch.no_grad():
        assert model.forward_features(model.example_inputs(1)[0]).shape == (1, 256, 4, 4)


@pytest.mark.parametrize("name", TINY)
def test_tiny_trains_one_step(name):
    model = create_model(name, num_classes=5).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(torch.rand(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > 0.9 * len(before)


@pytest.mark.parametrize("name", TINY)
def test_tiny_export_stays_rank4_and_matches(name):
    model = create_model(name).reparameterize()
    (x,) = model.example_inputs(1)
    ep = torch.export.export(model, (x,)).run_decompositions()
    ranks = [v.dim() for n in ep.graph.nodes if isinstance(v := n.meta.get("val"), torch.Tensor)]
    assert max(ranks) <= 4
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not [o for o in ops if any(f in o for f in ("unfold", "col2im", "im2col", "norm", "split", "sum",
                                                         "expand", "pixel_shuffle"))], ops
    # XNNPACK delegates unit-stride slices only: the patch regrouping must not use strided ones
    steps = [n.args[4] for n in ep.graph.nodes if n.target == torch.ops.aten.slice.Tensor and len(n.args) > 4]
    assert set(steps) <= {1}, steps
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), rtol=1e-5, atol=1e-6)


def _calibrate(model: nn.Module, size: int) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.0)
            nn.init.normal_(m.bias, std=0.1)
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, size, size))
    model.eval()


@pytest.mark.parametrize("name", TINY)
def test_reparameterize_folds_every_batchnorm(name):
    model = create_model(name, num_classes=10)
    _calibrate(model, 64)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fused = reparameterize_model(model)
        out = fused(x)
    assert not [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]  # pre-norms fold into 1x1 convs too
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_100", "mobilevit_tiny"])
def test_bad_input_size_is_a_usage_error(name):
    with pytest.raises(UsageError, match="multiple of 64"):
        create_model(name, input_size=224)


def test_bad_config_is_a_usage_error():
    with pytest.raises(UsageError, match="not divisible by 5 heads"):
        create_model("mobilevit_xxs", num_heads=5)
    with pytest.raises(UsageError, match="unknown option"):
        create_model("mobilevitv2_050", widht=0.5)
