"""Why an op falls off a delegate: the edge rule it breaks (docs/DESIGN.md) and which --fix rule can remove it.

Keys are edge-dialect op names as `to_edge` leaves them (`op_name` of the node: 'native_group_norm',
'expand_copy', ...). `hint` matches the user's source line for ops that only appear as a decomposition (the
`eq`/`any`/`where` of scaled_dot_product_attention's masked softmax).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EdgeRule:
    design_rule: str  # docs/DESIGN.md "Edge-friendly op rules" number
    why: str
    fixes: tuple[str, ...]  # rewrite names in rewrites.ALL_RULES ('' = report only)


_NORM = EdgeRule("2", "LayerNorm/GroupNorm: XNNPACK 1.5.1 has no layer_norm/group_norm kernel, so the graph splits "
                      "around it; LayerNorm is slow on mobile (BatchNorm or the exact edge norm form instead)",
                 ("module_norms", "layernorm_to_edge", "groupnorm1_to_edge"))
_SDPA = EdgeRule("3", "part of F.scaled_dot_product_attention's decomposition (masked softmax: eq/any/where, "
                      "rank-4 matmul -> expand): no SDPA kernel in XNNPACK; write attention as rank-3 bmm + softmax",
                 ("sdpa_to_matmul", "mha_to_matmul"))
_EXPAND = EdgeRule("4", "expand/expand_as (also what a rank-4 matmul decomposes into): XNNPACK has no expand_copy; "
                        "converters mishandle the broadcast (litert-torch tfl.mul)",
                   ("expand_to_broadcast", "matmul_to_bmm", "sdpa_to_matmul"))
_SPLIT = EdgeRule("4", "split of one fused projection (qkv): XNNPACK has no split_with_sizes kernel; use separate "
                       "q/k/v projections", ("split_to_projections",))
_SHAPE = EdgeRule("1", "shape plumbing XNNPACK does not take (squeeze, leading unsqueeze, select): tensors should "
                       "stay 4-D with few reshapes", ("squeeze_to_reshape",))
_CONST = EdgeRule("1", "integer/index work on constants at run time (attention-bias gather by an int64 index, a "
                       "dtype cast): XNNPACK computes float tensors only; cache it as a constant at deploy time",
                  ("fold_constants",))

RULES: dict[str, EdgeRule] = {
    "native_layer_norm": _NORM, "layer_norm": _NORM, "native_group_norm": _NORM, "group_norm": _NORM,
    "expand_copy": _EXPAND, "expand": _EXPAND,
    "split_with_sizes_copy": _SPLIT, "split_copy": _SPLIT, "split": _SPLIT, "unbind_copy": _SPLIT,
    "sum": EdgeRule("4", "sum: XNNPACK has no sum kernel; use spatial mean x N", ("sum_to_mean",)),
    "mean": EdgeRule("1", "mean over tokens of a rank-3 tensor (or without keepdim): XNNPACK's mean takes only 4-D "
                          "inputs over (H, W) with keepdim", ("mean_to_delegated",)),
    "slice_copy": EdgeRule("1", "slice with a step > 1 (strided subsampling): XNNPACK slices with unit stride only",
                           ("strided_slice_to_reshape",)),
    "squeeze_copy": _SHAPE, "unsqueeze_copy": _SHAPE, "select_copy": _SHAPE,
    "index": _CONST, "_to_dim_order_copy": _CONST, "_to_copy": _CONST,
    "scaled_dot_product_attention": _SDPA, "_safe_softmax": _SDPA,
    "im2col": EdgeRule("1", "unfold/im2col: Core ML lacks it and it breaks MobileViT v1's conversion; regroup "
                            "patches with slices + concats (see docs/models-mobilevit.md)", ()),
    "col2im": EdgeRule("1", "fold/col2im: as unfold", ()),
    "gelu": EdgeRule("5", "GELU: delegated by XNNPACK here; slower than ReLU/Hardswish on some mobile runtimes "
                          "(report only: --fix keeps it, the function would change)", ()),
}
SDPA_PARTS = {"eq", "any", "where", "logical_not", "full_like", "mul", "bmm", "expand_copy", "scalar_tensor"}
UNKNOWN = EdgeRule("-", "no XNNPACK kernel for this op in executorch 1.5.1 (not among the partitioner's ops)", ())


_MHA = EdgeRule("3", "part of nn.MultiheadAttention's decomposition (fused in_proj split, select/squeeze of "
                     "rank-4/5 heads, masked softmax): write attention as separate q/k/v + rank-3 bmm + softmax",
                ("mha_to_matmul",))


def rule_for(op: str, code_line: str | None = None, module_type: str = "") -> EdgeRule:
    """The rule for an op left outside the delegate (the calling module or source line decides for decomposition
    products: MultiheadAttention, scaled_dot_product_attention)."""
    if "MultiheadAttention" in module_type:
        return _MHA
    if code_line and "scaled_dot_product_attention" in code_line and op in SDPA_PARTS | {"_safe_softmax"}:
        return _SDPA
    return RULES.get(op, UNKNOWN)
