"""Reading exported graphs: op names, where a node comes from in the user's code, and the MACs it costs.

Every node of a `torch.export` graph keeps `nn_module_stack` (the module path that called it) and `stack_trace`
(the Python frames of the call); both survive `torch.export.save/load`, re-export of a GraphModule and
`to_edge`, so a lint finding can name the user's module and file:line even for a .pt2 someone else exported.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)\n\s*(?P<code>[^\n]*)')
# Frames inside torch itself are plumbing (nn.Module.__call__, F.conv2d); the user's frame is the innermost other one.
_TORCH_DIRS = ("/torch/", "\\torch\\")


@dataclass(frozen=True)
class Location:
    """Where an op comes from: module path + class, and the innermost user-code frame."""

    module: str
    module_type: str
    file: str | None = None
    line: int | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else "?"
        return f"{self.module or '(model)'} ({self.module_type.rsplit('.', 1)[-1] or '?'}) at {where}"


def op_name(node: torch.fx.Node) -> str:
    """'aten.native_group_norm.default' -> 'native_group_norm'; edge '_copy' variants kept as named."""
    target = node.target
    name = getattr(target, "_name", None) or getattr(target, "__name__", None) or str(target)
    name = str(name).split("::")[-1]
    parts = name.split(".")
    if parts[0] in ("aten", "dim_order_ops", "quantized_decomposed", "torchao") and len(parts) > 1:
        return parts[1]
    return parts[0]


def op_target(node: torch.fx.Node) -> str:
    """Full overload name, e.g. 'aten.sum.dim_IntList'."""
    t = node.target
    return str(getattr(t, "_name", None) or t).replace("::", ".")


def location(node: torch.fx.Node, strip_prefix: str = "") -> Location:
    stack = node.meta.get("nn_module_stack") or {}
    path, mtype = "", ""
    if stack:
        path, mtype = list(stack.values())[-1]
        mtype = mtype if isinstance(mtype, str) else getattr(mtype, "__qualname__", str(mtype))
    path = _clean_path(str(path))
    if strip_prefix and (path == strip_prefix or path.startswith(strip_prefix + ".")):
        path = path[len(strip_prefix) + 1:]
    frame = user_frame(node.meta.get("stack_trace") or "")
    return Location(path, str(mtype), *(frame or (None, None, None)))


def _clean_path(path: str) -> str:
    """nn_module_stack paths look like "L['self'].stages[2]" in strict export and 'stages.2' otherwise."""
    path = re.sub(r"L\['self'\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path).replace("._modules['", ".").replace("']", "")
    return path.strip(".")


def user_frame(stack_trace: str) -> tuple[str, int, str] | None:
    """(file, line, code) of the innermost frame outside torch, else the innermost frame."""
    frames = [(m["file"], int(m["line"]), m["code"].strip()) for m in _FRAME.finditer(stack_trace)]
    if not frames:
        return None
    outside = [f for f in frames if not any(d in f[0] for d in _TORCH_DIRS)]
    return (outside or frames)[-1]


def tensor_meta(node: Any) -> torch.Tensor | None:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return val if isinstance(val, torch.Tensor) else None


def shape(node: Any) -> tuple[int, ...] | None:
    val = tensor_meta(node)
    return tuple(int(d) for d in val.shape) if val is not None else None


def macs(node: torch.fx.Node) -> int:
    """Multiply-accumulates of a compute node from its static shapes (conv, linear, matmul family); 0 otherwise."""
    if node.op != "call_function":
        return 0
    name, out = op_name(node), shape(node)
    if out is None:
        return 0
    if name in ("convolution", "conv2d", "conv1d"):
        w = shape(node.args[1])
        groups = int(node.args[8] if name == "convolution" and len(node.args) > 8 else
                     (node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)))
        return math.prod(out) * (w[1] if w else 0) * math.prod(w[2:] if w else ()) if groups else 0
    if name in ("linear", "addmm", "mm", "bmm", "matmul", "baddbmm"):
        a = shape(node.args[1] if name in ("addmm", "baddbmm") else node.args[0])
        return math.prod(out) * (a[-1] if a else 0)
    return 0
