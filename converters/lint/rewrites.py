"""Function-preserving rewrites that put a model's ops on the delegates (docs/byom.md lists every rule).

Two levels:
- module rewrites (`MODULE_RULES`), where module types are known (a model given as `file.py:factory`): a module is
  replaced by an equivalent one built from delegate-friendly ops, weights copied;
- graph rewrites (`GRAPH_RULES`) on the unlifted GraphModule of a `torch.export` program (`ep.module()`), at the
  ATen level, so they work for a .pt2 someone else exported too. New nodes copy `stack_trace`/`nn_module_stack`
  of the node they replace, so a later lint still names the user's line.

A rule returns the list of sites it changed (module path + file:line). `fix.py` applies each rule, re-exports, and
keeps the change only when the outputs still equal the previous model's within 1e-5 of the output scale.
Each rule's docstring is its documentation: the ATen pattern, the replacement and why it is exact.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import GraphModule, Node

from .graph import location, op_name, shape

aten = torch.ops.aten


@dataclass(frozen=True)
class Rule:
    name: str
    level: str  # "module" | "graph"
    apply: Callable[[Any], list[str]]
    summary: str
    design_rule: str  # the docs/DESIGN.md edge rule it serves


# ---- module-level rules ------------------------------------------------------------------------------------------

def _input_ranks(model: nn.Module, example: torch.Tensor, types: tuple[type, ...]) -> dict[str, tuple[int, ...]]:
    """Input shape of each module of `types` on one forward pass (what a module is applied to decides the rule)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple) -> None:  # a pre-hook returning a value would replace the args
            if args and isinstance(args[0], torch.Tensor):
                shapes.setdefault(name, tuple(args[0].shape))
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules() if isinstance(m, types)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def _copy_affine(src: nn.Module, dst: nn.Module) -> nn.Module:
    if getattr(src, "weight", None) is not None and dst.weight is not None:
        dst.weight.data.copy_(src.weight.data.reshape(-1))
        dst.bias.data.copy_(src.bias.data.reshape(-1))
    return dst


def module_norms(model: nn.Module, example: torch.Tensor) -> list[str]:
    """GroupNorm(G) on 4-D maps and LayerNorm over the channels of a (B, C, H, W) map (timm LayerNorm2d: a
    LayerNorm subclass that permutes to channels-last and back) -> `norms.GroupNormEdge` / `LayerNormChannels`.
    Exact up to float rounding (the same mean/variance, computed by 1x1 convs with 1/C kernels)."""
    from .norms import make_edge_norm
    shapes = _input_ranks(model, example, (nn.GroupNorm, nn.LayerNorm))
    done = []
    for path, s in shapes.items():
        m = model.get_submodule(path)
        if isinstance(m, nn.GroupNorm) and len(s) == 4 and m.num_channels % m.num_groups == 0:
            new = make_edge_norm("group", m.num_channels, m.eps, m.affine, m.num_groups)
        elif (isinstance(m, nn.LayerNorm) and type(m) is not nn.LayerNorm and len(s) == 4
              and len(m.normalized_shape) == 1 and s[1] == m.normalized_shape[0]):
            new = make_edge_norm("layer", m.normalized_shape[0], m.eps, m.elementwise_affine)
        else:
            continue
        _replace(model, path, _copy_affine(m, new))
        done.append(f"{path} ({type(m).__name__} -> {type(new).__name__})")
    return done


class ExplicitAttention(nn.Module):
    """nn.MultiheadAttention without masks, as separate q/k/v projections, heads folded into the batch and rank-3
    `bmm` + softmax (DESIGN rules 3/4: no fused in_proj split, no rank-4 matmul). Masked calls use the original."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        e, h = mha.embed_dim, mha.num_heads
        self.heads, self.batch_first, self.original = h, mha.batch_first, mha
        self.q, self.k, self.v = (nn.Linear(e, e, bias=mha.in_proj_bias is not None) for _ in range(3))
        for i, proj in enumerate((self.q, self.k, self.v)):
            proj.weight.data.copy_(mha.in_proj_weight.data[i * e:(i + 1) * e])
            if proj.bias is not None:
                proj.bias.data.copy_(mha.in_proj_bias.data[i * e:(i + 1) * e])
        self.out = mha.out_proj

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            return self.original(query, key, value, key_padding_mask, need_weights, attn_mask,
                                 average_attn_weights, is_causal)
        if not self.batch_first:  # (N, B, E) -> (B, N, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, n, e = query.shape
        m, d = key.shape[1], e // self.heads
        q = self.q(query).reshape(b, n, self.heads, d).permute(0, 2, 1, 3).reshape(b * self.heads, n, d)
        k = self.k(key).reshape(b, m, self.heads, d).permute(0, 2, 3, 1).reshape(b * self.heads, d, m)
        v = self.v(value).reshape(b, m, self.heads, d).permute(0, 2, 1, 3).reshape(b * self.heads, m, d)
        attn = torch.softmax(torch.bmm(q, k) * (d ** -0.5), dim=-1)  # (B*h, N, M)
        o = torch.bmm(attn, v).reshape(b, self.heads, n, d).permute(0, 2, 1, 3).reshape(b, n, e)
        o = self.out(o)
        return (o if self.batch_first else o.transpose(0, 1)), None


def module_mha(model: nn.Module, example: torch.Tensor) -> list[str]:
    """nn.MultiheadAttention -> `ExplicitAttention` (separate q/k/v Linear, rank-3 bmm, softmax)."""
    done = []
    for path, m in list(model.named_modules()):
        if isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim and path:
            _replace(model, path, ExplicitAttention(m))
            done.append(f"{path} (MultiheadAttention -> ExplicitAttention)")
    return done


class Conv1x1Linear(nn.Module):
    """A Linear applied to a channels-last (B, H, W, C) map, computed as a 1x1 conv on the NCHW view.

    The two permutes it adds cancel against the model's own NCHW <-> NHWC permutes in the graph rule
    `cancel_permutes`, which is where the TRANSPOSE ops go away."""

    def __init__(self, lin: nn.Linear) -> None:
        super().__init__()
        self.conv = nn.Conv2d(lin.in_features, lin.out_features, 1, bias=lin.bias is not None)
        self.conv.weight.data.copy_(lin.weight.data.view(lin.out_features, lin.in_features, 1, 1))
        if lin.bias is not None:
            self.conv.bias.data.copy_(lin.bias.data)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def module_linear4d(model: nn.Module, example: torch.Tensor) -> list[str]:
    """nn.Linear on a 4-D channels-last input -> `Conv1x1Linear` (DESIGN rule 2: 1x1 conv instead of Linear)."""
    done = []
    for path, s in _input_ranks(model, example, (nn.Linear,)).items():
        if len(s) == 4 and path:
            lin = model.get_submodule(path)
            _replace(model, path, Conv1x1Linear(lin))
            done.append(f"{path} (Linear on {list(s)} -> 1x1 Conv2d)")
    return done


# ---- graph-level helpers ---------------------------------------------------------------------------------------

class _Builder:
    """Insert ATen calls before `anchor`, copying its provenance so lint still points at the user's code."""

    def __init__(self, gm: GraphModule, anchor: Node) -> None:
        self.gm, self.anchor = gm, anchor

    def __call__(self, target: Any, *args: Any, **kwargs: Any) -> Node:
        with self.gm.graph.inserting_before(self.anchor):
            n = self.gm.graph.call_function(target, args, kwargs)
        for key in ("stack_trace", "nn_module_stack", "source_fn_stack"):
            if key in self.anchor.meta:
                n.meta[key] = self.anchor.meta[key]
        return n

    def const(self, value: torch.Tensor) -> Node:
        i = 0
        while hasattr(self.gm, f"_edge_fix_const{i}"):
            i += 1
        name = f"_edge_fix_const{i}"
        self.gm.register_buffer(name, value.detach().clone())
        with self.gm.graph.inserting_before(self.anchor):
            return self.gm.graph.get_attr(name)


def _site(node: Node) -> str:
    return location(node).short()


def _calls(gm: GraphModule, *targets: Any) -> list[Node]:
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in targets]


def _dtype(node: Any) -> torch.dtype:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return val.dtype if isinstance(val, torch.Tensor) else torch.float32


def _finish(gm: GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()


def _row_mean(b: _Builder, x: Node, n: int, dtype: torch.dtype) -> Node:
    """Mean over the last dim of any-rank `x` as a Linear with a (1, n) weight of 1/n: (..., n) -> (..., 1).
    XNNPACK's mean.dim takes only 4-D inputs over (2, 3); its fully-connected op takes any rank."""
    return b(aten.linear.default, x, b.const(torch.full((1, n), 1.0 / n, dtype=dtype)))


# ---- graph rules ---------------------------------------------------------------------------------------------

def graph_sdpa(gm: GraphModule) -> list[str]:
    """F.scaled_dot_product_attention(q, k, v[, float mask][, scale]) -> explicit matmul-softmax: heads folded into
    the batch, `bmm(q, k^T) * scale (+ mask)`, softmax, `bmm(., v)` (rank 3). XNNPACK has no SDPA kernel and the
    decomposition's masked `_safe_softmax` (eq/any/where/logical_not) runs outside it. Multi-query attention (one
    key/value head, broadcast over the query heads) folds the heads into the rows. Causal/dropout calls stay."""
    done = []
    for n in _calls(gm, aten.scaled_dot_product_attention.default):
        q, k, v = n.args[:3]
        mask = n.args[3] if len(n.args) > 3 else n.kwargs.get("attn_mask")
        dropout = n.args[4] if len(n.args) > 4 else n.kwargs.get("dropout_p", 0.0)
        causal = n.args[5] if len(n.args) > 5 else n.kwargs.get("is_causal", False)
        scale = n.kwargs.get("scale", n.args[6] if len(n.args) > 6 else None)
        sq, sk, sv = shape(q), shape(k), shape(v)
        if causal or dropout or not (sq and sk and sv) or len(sq) < 3 or (mask is not None and
                                                                        _dtype(mask) == torch.bool):
            continue
        folded = _sdpa_batch(sq, sk, sv)
        if folded is None:
            continue
        batch, rows = folded
        b = _Builder(gm, n)
        q3 = b(aten.reshape.default, q, [batch, rows, sq[-1]])
        kt = b(aten.permute.default, b(aten.reshape.default, k, [batch, sk[-2], sk[-1]]), [0, 2, 1])
        v3 = b(aten.reshape.default, v, [batch, sv[-2], sv[-1]])
        s = b(aten.mul.Tensor, b(aten.bmm.default, q3, kt), float(scale if scale is not None else sq[-1] ** -0.5))
        if mask is not None:
            sm = shape(mask)
            full = list(sq[:-2]) + [sq[-2], sk[-2]]
            m = mask if list(sm or ()) == full else b(aten.expand.default, mask, full)
            s = b(aten.add.Tensor, s, b(aten.reshape.default, m, [batch, rows, sk[-2]]))
        o = b(aten.bmm.default, b(aten.softmax.int, s, -1), v3)
        n.replace_all_uses_with(b(aten.reshape.default, o, list(sq[:-1]) + [sv[-1]]))
        gm.graph.erase_node(n)  # SDPA is tagged nondeterministic_seeded (dropout): dead-code elimination keeps it
        done.append(_site(n))
    _finish(gm)
    return done


def _sdpa_batch(sq: tuple, sk: tuple, sv: tuple) -> tuple[int, int] | None:
    """(batch, query rows) of the rank-3 form: equal batch dims fold into the batch; multi-query attention
    (q (B, H, N, d), k/v (B, 1, M, d): timm MobileNetV4's MultiQueryAttention2d) folds the heads into the rows,
    since every head attends to the same keys. None for other broadcasts."""
    if list(sq[:-2]) == list(sk[:-2]) == list(sv[:-2]):
        return math.prod(sq[:-2]), sq[-2]
    if len(sq) == len(sk) == len(sv) == 4 and list(sk[:2]) == list(sv[:2]) == [sq[0], 1]:
        return sq[0], sq[1] * sq[2]
    return None


def graph_matmul(gm: GraphModule) -> list[str]:
    """`a @ b` on rank >= 3 tensors (LeViT's and EfficientFormer's `q @ k.transpose(-2, -1)`, `attn @ v`) -> rank-3
    `bmm` on reshaped views: equal batch dims fold into one; a (B, H, N, K) @ (B, 1, K, M) (one key/value for every
    head, multi-query attention) folds the heads into the rows, (B, H*N, K) @ (B, K, M). Exact: the same dot
    products. `to_edge` decomposes a rank-4 matmul into expand_copy + bmm, and XNNPACK has no expand_copy
    (DESIGN rules 3/4: one subgraph split per expand)."""
    done = []
    for n in _calls(gm, aten.matmul.default):
        a, w = n.args[:2]
        sa, sb, out = shape(a), shape(w), shape(n)
        if not (sa and sb and out) or len(sa) < 3 or len(sa) != len(sb):
            continue
        b = _Builder(gm, n)
        batch = math.prod(sa[:-2])
        if list(sa[:-2]) == list(sb[:-2]):
            o = b(aten.bmm.default, b(aten.reshape.default, a, [batch, sa[-2], sa[-1]]),
                  b(aten.reshape.default, w, [batch, sb[-2], sb[-1]]))
        elif len(sa) == 4 and sa[0] == sb[0] and sb[1] == 1:  # multi-query: one key/value for every head
            o = b(aten.bmm.default, b(aten.reshape.default, a, [sa[0], sa[1] * sa[2], sa[3]]),
                  b(aten.reshape.default, w, [sb[0], sb[2], sb[3]]))
        else:
            continue
        n.replace_all_uses_with(b(aten.reshape.default, o, list(out)))
        done.append(_site(n))
    _finish(gm)
    return done


def graph_expand(gm: GraphModule) -> list[str]:
    """expand/expand_as -> plain broadcast: an expand to the shape it already has is dropped, and one whose every
    user is a broadcasting elementwise op (add/sub/mul/div) is dropped too (the op broadcasts by itself).
    XNNPACK takes no expand_copy and litert-torch mis-broadcasts tfl.mul after expand_as (timm MobileViTv2)."""
    binary = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor}
    done = []
    for n in _calls(gm, aten.expand.default, aten.expand_as.default):
        src = n.args[0]
        same = shape(src) == shape(n)
        if not same and not all(u.op == "call_function" and u.target in binary and _broadcast_ok(u, n)
                                for u in n.users):
            continue
        n.replace_all_uses_with(src)
        done.append(_site(n))
    _finish(gm)
    return done


def _broadcast_ok(user: Node, expanded: Node) -> bool:
    """The binary op still produces the expanded shape when the expand is removed."""
    others = [a for a in user.args[:2] if a is not expanded]
    return bool(others) and all(shape(o) == shape(expanded) for o in others if isinstance(o, Node))


def _reduction(n: Node) -> tuple[Node, list[int], bool, tuple[int, ...]] | None:
    """(input, sorted non-negative dims, keepdim, input shape) of a sum/mean over given dims; None when the input
    shape is unknown, no dims are given (a full reduction) or a dtype is requested — forms the rules leave alone."""
    x, dims = n.args[0], n.args[1]
    keep = bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False))
    s = shape(x)
    if not s or not dims or n.kwargs.get("dtype") is not None:
        return None
    return x, sorted(d % len(s) for d in dims), keep, s


def graph_sum(gm: GraphModule) -> list[str]:
    """sum -> mean x N: a 4-D sum over (2, 3) becomes `mean((2, 3), keepdim=True) * (H*W)`; a sum over the last dim
    (any rank, e.g. MobileViTv2's context vector over tokens) a Linear with a ones (1, N) weight. XNNPACK has no
    sum kernel (DESIGN rule 4). Other reductions are left as they are."""
    done = []
    for n in _calls(gm, aten.sum.dim_IntList):
        args = _reduction(n)
        if args is None:
            continue
        x, dims, keep, s = args
        b = _Builder(gm, n)
        if len(s) == 4 and dims == [2, 3]:
            out = b(aten.mul.Tensor, b(aten.mean.dim, x, [2, 3], True), float(s[2] * s[3]))
        elif dims == [len(s) - 1]:
            out = b(aten.linear.default, x, b.const(torch.ones((1, s[-1]), dtype=_dtype(x))))
        else:
            continue
        n.replace_all_uses_with(out if keep else b(aten.reshape.default, out, list(shape(n))))
        done.append(_site(n))
    _finish(gm)
    return done


def graph_mean(gm: GraphModule) -> list[str]:
    """mean forms XNNPACK refuses -> forms it takes: a 4-D mean over (2, 3) without keepdim gets keepdim + a
    reshape; a mean over the last dim of any rank (token pooling on (B, N, C) after a transpose, or over C)
    becomes a Linear with a 1/N weight; a mean over dim 1 of a rank-3 (B, N, C) becomes a permute + that Linear.
    adaptive_avg_pool2d(x, 1) (global pooling) becomes mean((2, 3), keepdim=True): the same average, and the form
    litert-torch keeps in NHWC (no TRANSPOSE before the classifier's flatten)."""
    done = []
    for n in _calls(gm, aten.adaptive_avg_pool2d.default):
        if list(n.args[1]) == [1, 1] and len(shape(n.args[0]) or ()) == 4:
            n.replace_all_uses_with(_Builder(gm, n)(aten.mean.dim, n.args[0], [2, 3], True))
            done.append(_site(n))
    for n in _calls(gm, aten.mean.dim):
        args = _reduction(n)
        if args is None:
            continue
        x, dims, keep, s = args
        b = _Builder(gm, n)
        if len(s) == 4 and dims == [2, 3]:
            if keep:
                continue
            out = b(aten.mean.dim, x, [2, 3], True)
        elif dims == [len(s) - 1]:
            out = _row_mean(b, x, s[-1], _dtype(x))
        elif len(s) == 3 and dims == [1]:
            out = _row_mean(b, b(aten.permute.default, x, [0, 2, 1]), s[1], _dtype(x))  # (B, C, 1)
            out = b(aten.permute.default, out, [0, 2, 1])  # (B, 1, C)
        else:
            continue
        n.replace_all_uses_with(out if keep else b(aten.reshape.default, out, list(shape(n))))
        done.append(_site(n))
    _finish(gm)
    return done


def graph_layernorm(gm: GraphModule) -> list[str]:
    """layer_norm over the last dim -> explicit mean/variance: over the channels of a (B, C, H, W) map reached by
    permute(0, 2, 3, 1) ... permute(0, 3, 1, 2) (timm LayerNorm2d) the channel means are 1x1 convs with a 1/C
    kernel and both permutes go; elsewhere (tokens (B, N, C), any rank) the means are a Linear with a 1/C weight.
    `d = x - mean; d * rsqrt(mean(d*d) + eps) * w + b` is LayerNorm's definition (biased variance)."""
    done = []
    for n in _calls(gm, aten.layer_norm.default):
        x, normalized = n.args[0], n.args[1]
        w = n.args[2] if len(n.args) > 2 else n.kwargs.get("weight")
        bias = n.args[3] if len(n.args) > 3 else n.kwargs.get("bias")
        eps = float(n.args[4] if len(n.args) > 4 else n.kwargs.get("eps", 1e-5))
        s = shape(x)
        if not s or len(normalized) != 1:
            continue
        c = int(normalized[0])
        b = _Builder(gm, n)
        channels = _channels_layernorm_site(n)
        if channels is not None:
            src, out_perm = channels
            b = _Builder(gm, out_perm)
            y = _norm_channels(b, src, c, eps, w, bias, _dtype(src))
            out_perm.replace_all_uses_with(y)
        else:
            mean = _row_mean(b, x, c, _dtype(x))
            d = b(aten.sub.Tensor, x, mean)
            var = _row_mean(b, b(aten.mul.Tensor, d, d), c, _dtype(x))
            y = b(aten.mul.Tensor, d, b(aten.rsqrt.default, b(aten.add.Tensor, var, eps)))
            y = b(aten.mul.Tensor, y, w) if w is not None else y
            y = b(aten.add.Tensor, y, bias) if bias is not None else y
            n.replace_all_uses_with(y)
        done.append(_site(n) + (" [channels form]" if channels is not None else ""))
    _finish(gm)
    return done


def _channels_layernorm_site(n: Node) -> tuple[Node, Node] | None:
    """(NCHW input, closing permute) when the LayerNorm sits between permute(0,2,3,1) and permute(0,3,1,2)."""
    x = n.args[0]
    users = list(n.users)
    if not (isinstance(x, Node) and x.target == aten.permute.default and list(x.args[1]) == [0, 2, 3, 1]
            and len(users) == 1 and users[0].target == aten.permute.default
            and list(users[0].args[1]) == [0, 3, 1, 2]):
        return None
    return x.args[0], users[0]


def _norm_channels(b: _Builder, x: Node, c: int, eps: float, w: Any, bias: Any, dtype: torch.dtype,
                   spatial: bool = False) -> Node:
    """LayerNorm over channels (per pixel: the 1/C conv runs on the full map) or, `spatial`, GroupNorm(1).

    GroupNorm(1)'s statistic is one number per sample, so the spatial mean goes FIRST (one pass over the map,
    (B, C, 1, 1) out) and the 1/C conv then averages C values instead of a one-output-channel GEMM over every
    pixel; gamma folds into the (B, C, 1, 1) scale, saving a full-size multiply. Same sums, reordered: exact up
    to float rounding. Measured 1.05-1.6x faster than conv-then-mean, most on large maps (byom_peers.norms.md)."""
    avg = b.const(torch.full((1, c, 1, 1), 1.0 / c, dtype=dtype))
    wc = b(aten.reshape.default, w, [1, c, 1, 1]) if w is not None else None
    bc = b(aten.reshape.default, bias, [1, c, 1, 1]) if bias is not None else None
    if spatial:
        mean = b(aten.conv2d.default, b(aten.mean.dim, x, [2, 3], True), avg)  # (B, 1, 1, 1)
        d = b(aten.sub.Tensor, x, mean)
        var = b(aten.conv2d.default, b(aten.mean.dim, b(aten.mul.Tensor, d, d), [2, 3], True), avg)
        scale = b(aten.rsqrt.default, b(aten.add.Tensor, var, eps))
        scale = b(aten.mul.Tensor, scale, wc) if wc is not None else scale  # (B, C, 1, 1)
        y = b(aten.mul.Tensor, d, scale)
        return b(aten.add.Tensor, y, bc) if bc is not None else y
    mean = b(aten.conv2d.default, x, avg)
    d = b(aten.sub.Tensor, x, mean)
    var = b(aten.conv2d.default, b(aten.mul.Tensor, d, d), avg)
    y = b(aten.mul.Tensor, d, b(aten.rsqrt.default, b(aten.add.Tensor, var, eps)))
    y = b(aten.mul.Tensor, y, wc) if wc is not None else y
    return b(aten.add.Tensor, y, bc) if bc is not None else y


def graph_groupnorm(gm: GraphModule) -> list[str]:
    """group_norm(x, 1, w, b, eps) on (B, C, H, W) -> spatial mean((2, 3)) then a 1/C conv on the (B, C, 1, 1)
    result (the mean over C, H and W), sub, mul, rsqrt, gamma folded into the per-channel scale, add (exact:
    GroupNorm(1) normalizes over C, H and W with the biased variance). XNNPACK has no group_norm kernel (rule 2)."""
    done = []
    for n in _calls(gm, aten.group_norm.default):
        x, groups = n.args[0], int(n.args[1])
        w = n.args[2] if len(n.args) > 2 else n.kwargs.get("weight")
        bias = n.args[3] if len(n.args) > 3 else n.kwargs.get("bias")
        eps = float(n.args[4] if len(n.args) > 4 else n.kwargs.get("eps", 1e-5))
        s = shape(x)
        if not s or len(s) != 4 or groups != 1:
            continue
        b = _Builder(gm, n)
        n.replace_all_uses_with(_norm_channels(b, x, s[1], eps, w, bias, _dtype(x), spatial=True))
        done.append(_site(n))
    _finish(gm)
    return done


def graph_split(gm: GraphModule) -> list[str]:
    """split/chunk/unbind -> separate projections or slices: when the split tensor is the output of ONE conv2d or
    linear used only by the split, along its output channels, the projection becomes one conv/linear per piece with
    the matching rows of the weight (exact: the same dot products); otherwise each piece is a unit-stride slice
    (unbind pieces reshaped to drop the dim). XNNPACK has no split_with_sizes kernel (rule 4)."""
    done = []
    for n in _calls(gm, aten.split_with_sizes.default, aten.split.Tensor, aten.chunk.default, aten.unbind.int):
        pieces = _split_pieces(n)
        if pieces is None:
            continue
        dim, bounds, squeeze = pieces
        getitems = [u for u in n.users if u.target is operator.getitem]
        if len(getitems) != len(n.users):
            continue
        proj = _projection(n, dim, squeeze)
        for g in getitems:
            start, end = bounds[g.args[1]]
            b = _Builder(gm, g)
            piece = proj(b, start, end) if proj else b(aten.slice.Tensor, n.args[0], dim, start, end)
            if squeeze:
                piece = b(aten.reshape.default, piece, list(shape(g)))
            g.replace_all_uses_with(piece)
        done.append(_site(n) + (" [separate projections]" if proj else " [slices]"))
    _finish(gm)
    return done


def _split_pieces(n: Node) -> tuple[int, list[tuple[int, int]], bool] | None:
    s = shape(n.args[0])
    if not s:
        return None
    if n.target == aten.unbind.int:
        dim = int(n.args[1] if len(n.args) > 1 else 0) % len(s)
        return dim, [(i, i + 1) for i in range(s[dim])], True
    dim = int(n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)) % len(s)
    if n.target == aten.split_with_sizes.default:
        sizes = list(n.args[1])
    elif n.target == aten.chunk.default:
        step = math.ceil(s[dim] / int(n.args[1]))
        sizes = [min(step, s[dim] - i) for i in range(0, s[dim], step)]
    else:
        step = int(n.args[1])
        sizes = [min(step, s[dim] - i) for i in range(0, s[dim], step)]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return dim, [(a, a + z) for a, z in zip(starts, sizes)], False


def _projection(n: Node, dim: int, squeeze: bool) -> Callable[[_Builder, int, int], Node] | None:
    """A builder of one projection per piece when `n` splits the output channels of a conv2d/linear."""
    src = n.args[0]
    if squeeze or not isinstance(src, Node) or len(src.users) != 1 or src.op != "call_function":
        return None
    rank = len(shape(src) or ())
    is_conv = src.target == aten.conv2d.default and dim == 1
    is_lin = src.target == aten.linear.default and dim == rank - 1
    w = src.args[1]
    if not (is_conv or is_lin) or not (isinstance(w, Node) and w.op == "get_attr"):
        return None
    bias = src.args[2] if len(src.args) > 2 else None
    if isinstance(bias, Node) and bias.op != "get_attr":
        return None
    gm = src.graph.owning_module
    weight = _attr(gm, w.target)
    bias_value = _attr(gm, bias.target) if isinstance(bias, Node) else None

    def build(b: _Builder, start: int, end: int) -> Node:
        ws = b.const(weight[start:end])  # static weights: XNNPACK takes only constant conv/linear parameters
        bs = b.const(bias_value[start:end]) if bias_value is not None else None
        return b(src.target, src.args[0], ws, bs, *src.args[3:])
    return build


def graph_squeeze(gm: GraphModule) -> list[str]:
    """squeeze / unsqueeze on a leading dim -> reshape to the static shape (XNNPACK has no squeeze_copy and takes
    unsqueeze only on the trailing dim; view_copy is delegated)."""
    done = []
    targets = (aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default,
               aten.select.int)
    for n in _calls(gm, *targets):
        out = shape(n)
        if out is None:
            continue
        b = _Builder(gm, n)
        if n.target == aten.select.int:
            dim, idx = int(n.args[1]), int(n.args[2])
            size = (shape(n.args[0]) or (0,))[dim]
            idx = idx % size if size else idx
            src = b(aten.slice.Tensor, n.args[0], dim, idx, idx + 1)
        elif n.target == aten.unsqueeze.default and int(n.args[1]) in (-1, len(out) - 1):
            continue
        else:
            src = n.args[0]
        n.replace_all_uses_with(b(aten.reshape.default, src, list(out)))
        done.append(_site(n))
    _finish(gm)
    return done


def graph_strided_slice(gm: GraphModule) -> list[str]:
    """x[..., a:b:s, ...] with step s > 1 (LeViT's subsampling `x[:, ::2, ::2]`) -> pad the sliced dim to a multiple
    of s (zeros, never read), view it as (n, s), take index 0 of the s-dim with a unit-stride slice, view back.
    Exact (the same elements); XNNPACK slices only with unit stride."""
    done = []
    for n in _calls(gm, aten.slice.Tensor):
        x = n.args[0]
        dim = int(n.args[1]) if len(n.args) > 1 else 0
        step = int(n.args[4]) if len(n.args) > 4 else 1
        s, out = shape(x), shape(n)
        if step <= 1 or not s or not out:
            continue
        dim %= len(s)
        start = int(n.args[2] or 0) if len(n.args) > 2 else 0
        start = start + s[dim] if start < 0 else start
        count = out[dim]
        b = _Builder(gm, n)
        y = b(aten.slice.Tensor, x, dim, start, min(s[dim], start + count * step))
        length = min(s[dim], start + count * step) - start
        if length < count * step:  # pad the tail of `dim` (pad spec runs from the last dim backwards)
            pad = [0, 0] * (len(s) - 1 - dim) + [0, count * step - length]
            y = b(aten.constant_pad_nd.default, y, pad, 0.0)
        grouped = list(s[:dim]) + [count, step] + list(s[dim + 1:])
        y = b(aten.slice.Tensor, b(aten.reshape.default, y, grouped), dim + 1, 0, 1)
        n.replace_all_uses_with(b(aten.reshape.default, y, list(out)))
        done.append(_site(n))
    _finish(gm)
    return done


def graph_fold_constants(gm: GraphModule) -> list[str]:
    """Compute once every op that reads only parameters/buffers (no input): e.g. LeViT's attention-bias gather
    `biases[:, idxs]` (an int64 index op and a cast XNNPACK refuses) becomes one constant, as our zoo's
    `reparameterize()` caches it. Exact: the same values, computed ahead of time in eval mode."""
    const: dict[Node, torch.Tensor] = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            const[n] = _attr(gm, n.target)
        elif n.op == "call_function" and _foldable(n, const):
            args, kwargs = torch.fx.node.map_arg((n.args, n.kwargs), lambda a: const[a])
            with torch.no_grad():
                value = n.target(*args, **kwargs)
            if isinstance(value, torch.Tensor):
                const[n] = value
    done = []
    for n, value in list(const.items()):
        if n.op == "call_function" and any(u not in const for u in n.users):
            n.replace_all_uses_with(_Builder(gm, n).const(value))
            if op_name(n) not in _VIEWS:
                done.append(_site(n))
    _finish(gm)
    return done + _scalar_operands(gm)


_BINARY = (aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor)


def _scalar_operands(gm: GraphModule) -> list[str]:
    """A 0-d integer constant or a Python int in float arithmetic (timm LeViT's and EfficientFormer's distilled
    head `(x + x_dist) / 2`: re-exporting the graph lifts the 2 as an int64 tensor constant) -> a float number: to_edge otherwise casts it at run time with a `_to_dim_order_copy`
    XNNPACK refuses (invalid dtype), a subgraph split before the output. Exact: small integers are exact floats."""
    done = []
    for n in _calls(gm, *_BINARY):
        if (len(n.args) > 1 and type(n.args[1]) is int and isinstance(n.args[0], Node)
                and _dtype(n.args[0]).is_floating_point):
            # `x / 2` with a Python int: re-exporting the GraphModule lifts the 2 as an int64 tensor constant
            n.args = (n.args[0], float(n.args[1]), *n.args[2:])
            done.append(_site(n) + " [int scalar]")
            continue
        for i, a in enumerate(n.args[:2]):
            other = n.args[1 - i]
            value = _constant(gm, a)
            if value is None or not (isinstance(other, Node) and _dtype(other).is_floating_point):
                continue
            if value.dim() != 0 or value.dtype.is_floating_point or value.dtype == torch.bool:
                continue
            if i == 0 and n.target in (aten.sub.Tensor, aten.div.Tensor):
                continue  # number - tensor / number / tensor: keep the tensor form (operand order matters)
            args = list(n.args)
            args[i] = float(value.item())
            if i == 0:  # add/mul commute: the tensor goes first, as ATen's Scalar overloads want it
                args[0], args[1] = args[1], args[0]
            n.args = tuple(args)
            done.append(_site(n) + " [scalar operand]")
    _finish(gm)
    return done


_VIEWS = {"reshape", "view", "permute", "t", "slice", "unsqueeze", "squeeze", "expand", "contiguous", "clone",
          "_to_copy", "alias", "detach"}


def _attr(gm: GraphModule, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _foldable(n: Node, const: dict[Node, torch.Tensor], pending: Node | None = None) -> bool:
    if not isinstance(n.target, torch._ops.OpOverload) or n.target._schema.is_mutable:
        return False
    inputs = n.all_input_nodes
    return bool(inputs) and all(a in const or a is pending for a in inputs)


_PASS_THROUGH = {aten.detach.default, aten.detach_.default, aten.lift_fresh_copy.default, aten.clone.default}


def _constant(gm: GraphModule, a: Any) -> torch.Tensor | None:
    """The tensor behind `a` when it is a get_attr, possibly behind detach/lift_fresh_copy (how export wraps a
    tensor literal created in forward); None otherwise."""
    while isinstance(a, Node) and a.op == "call_function" and a.target in _PASS_THROUGH:
        a = a.args[0]
    return _attr(gm, a.target) if isinstance(a, Node) and a.op == "get_attr" else None


_UNARY = {aten.gelu.default, aten.relu.default, aten.hardswish.default, aten.silu.default, aten.sigmoid.default,
          aten.tanh.default, aten.hardsigmoid.default, aten.clone.default, aten.dropout.default}


def graph_permutes(gm: GraphModule) -> list[str]:
    """Channel-moving permute chains -> channels-last forms: permute(p) then permute(q) composing to the identity
    (directly, or around elementwise unary ops like GELU that commute with any permute) is removed. This is what
    turns a Linear-on-NHWC MLP, once it is a 1x1 conv (`linear4d_to_conv1x1`), into a plain NCHW conv MLP with no
    TRANSPOSE in TFLite (rule 1)."""
    done = []
    changed = True
    while changed:
        changed = False
        for n in _calls(gm, aten.permute.default):
            chain, x = [], n.args[0]
            while isinstance(x, Node) and x.target in _UNARY and len(x.users) == 1:
                chain.append(x)
                x = x.args[0]
            if not (isinstance(x, Node) and x.target == aten.permute.default and len(x.users) == 1):
                continue
            p, q = list(x.args[1]), list(n.args[1])
            if [p[i] for i in q] != list(range(len(q))):
                continue
            new = x.args[0]
            for op in reversed(chain):
                new = _Builder(gm, n)(op.target, new, *op.args[1:], **op.kwargs)
            n.replace_all_uses_with(new)
            done.append(_site(n))
            _finish(gm)
            changed = True
            break
    _finish(gm)
    return done


def graph_softmax(gm: GraphModule) -> list[str]:
    """softmax over the last dim of a rank-4 tensor -> the same softmax on a rank-3 view (B*C, H, W) and back.
    Exact (softmax rows are unchanged by the reshape). XNNPACK 1.5.1 delegates the rank-4 form but computes it
    wrongly (measured: the .pte's logits off by ~100x max|logit| on a (B, 1, 1, N) token softmax; DESIGN.md's
    MobileViTv2 note); the rank-3 form is right."""
    done = []
    for n in _calls(gm, aten.softmax.int, aten._softmax.default):
        s = shape(n.args[0])
        if not s or len(s) != 4 or int(n.args[1]) % 4 != 3:
            continue
        b = _Builder(gm, n)
        x3 = b(aten.reshape.default, n.args[0], [s[0] * s[1], s[2], s[3]])
        n.replace_all_uses_with(b(aten.reshape.default, b(aten.softmax.int, x3, -1), list(s)))
        done.append(_site(n))
    _finish(gm)
    return done


MODULE_RULES: tuple[Rule, ...] = (
    Rule("module_norms", "module", module_norms,
         "GroupNorm / LayerNorm over channels (LayerNorm2d) -> exact edge norm modules", "2"),
    Rule("mha_to_matmul", "module", module_mha,
         "nn.MultiheadAttention -> separate q/k/v projections, rank-3 bmm + softmax", "3, 4"),
    Rule("linear4d_to_conv1x1", "module", module_linear4d,
         "Linear on a 4-D channels-last tensor -> 1x1 Conv2d (permutes cancel in cancel_permutes)", "2"),
)
GRAPH_RULES: tuple[Rule, ...] = (
    Rule("fold_constants", "graph", graph_fold_constants,
         "ops on parameters only (attention-bias gathers) -> constants", "1"),
    Rule("sdpa_to_matmul", "graph", graph_sdpa,
         "scaled_dot_product_attention -> explicit bmm-softmax-bmm (rank 3)", "3"),
    Rule("matmul_to_bmm", "graph", graph_matmul,
         "rank >= 3 matmul (q @ k^T, attn @ v) -> rank-3 bmm on reshaped views (no expand_copy)", "3, 4"),
    Rule("softmax4d_to_rank3", "graph", graph_softmax,
         "softmax over the last dim of a rank-4 tensor -> rank-3 view (XNNPACK computes rank 4 wrongly)", "3"),
    Rule("layernorm_to_edge", "graph", graph_layernorm,
         "layer_norm -> mean/variance by 1x1 conv (channels) or Linear (tokens) + rsqrt", "2"),
    Rule("groupnorm1_to_edge", "graph", graph_groupnorm,
         "group_norm(1) -> spatial mean, then 1/C conv on (B, C, 1, 1) + rsqrt, gamma in the scale", "2"),
    Rule("expand_to_broadcast", "graph", graph_expand,
         "expand/expand_as -> plain broadcast (or dropped when it changes nothing)", "4"),
    Rule("sum_to_mean", "graph", graph_sum,
         "sum -> mean x N (spatial) or a ones-vector Linear (last dim)", "4"),
    Rule("mean_to_delegated", "graph", graph_mean,
         "mean without keepdim / over tokens -> keepdim mean or 1/N Linear", "1"),
    Rule("split_to_projections", "graph", graph_split,
         "split of one projection -> separate projections; other splits -> slices", "4"),
    Rule("strided_slice_to_reshape", "graph", graph_strided_slice,
         "slices with step > 1 -> pad + reshape + unit-stride slice", "1"),
    Rule("squeeze_to_reshape", "graph", graph_squeeze,
         "squeeze / leading unsqueeze / select -> reshape (+ slice)", "1"),
    Rule("cancel_permutes", "graph", graph_permutes,
         "permute chains that only move channels and back -> removed", "1"),
)
ALL_RULES = {r.name: r for r in MODULE_RULES + GRAPH_RULES}
