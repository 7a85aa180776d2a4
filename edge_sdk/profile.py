"""Per-op profile of a bundle: where the time goes, in which model module, and how close each op class gets to the
machine's GEMM peak (`edge-sdk profile BUNDLE`).

ExecuTorch (.pte): the program is run with ETDump enabled and parsed with `executorch.devtools.Inspector`. The
XNNPACK delegate logs one event per XNNPACK operator ("Convolution (NHWC, F32) IGEMM #3", ...), but those events
carry no debug handle, so an ETRecord cannot map them to the model (measured: every delegated row came back with an
empty module hierarchy). The map is made here instead: the bundle's model is re-created from its manifest (zoo name
+ config: the architecture, not the weights, decides the graph), exported and lowered with the same converter code,
the XNNPACK delegate's own passes are replayed on each partition, and the resulting node sequence (op, module path,
shapes, MACs) is aligned with the event sequence by op kind. The re-created lowering is checked against the
delegated-op counts the bundle's manifest recorded at conversion time. Non-delegated ops carry debug handles and
map directly. The map is cached per bundle sha256 (no file is added to the bundle: an ETRecord holds two copies of
the weights, ~6x the .pte of a tiny model).

TFLite (.tflite): ai-edge-litert's Python API has no op profiler. The profile states that, gives what can be read
from Python (whole-model latency, XNNPACK partition count from the delegate's log, ops and MACs per op type, float
ops in an int8 graph) and names the tool that has per-op times (LiteRT's `benchmark_model --enable_op_profiling`).

The GEMM peak is measured with the runtime's own GEMM (a 256x2048x2048 Linear lowered to XNNPACK): torch.matmul
reaches far less and would put efficiencies above 100%. It is cached per machine, thread count and ExecuTorch
version (~/.cache/edge-sdk, or $EDGE_SDK_CACHE).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from edge_sdk.errors import EdgeError, UsageError

GEMM_SHAPE = (256, 2048, 2048)  # rows x in x out of the peak Linear
OVERHEAD = "runtime overhead (outside kernels)"

# ---- op kinds ------------------------------------------------------------------------------------------------------

# XNNPACK operator name (text before " (" or " #") -> op class used in the report.
KERNEL_CLASS = {
    "Convolution": "conv", "Deconvolution": "conv", "Fully Connected": "gemm (1x1 conv / linear)",
    "Batch Matrix Multiply": "bmm (attention matmul)", "Softmax": "softmax",
    "Transpose": "data movement", "Slice": "data movement", "Copy": "data movement",
    "Static Reshape": "data movement", "Concatenate": "data movement", "Even Split": "data movement",
    "Constant Pad": "data movement", "Depth To Space": "data movement", "Space To Depth": "data movement",
    "Add": "elementwise", "Multiply": "elementwise", "Subtract": "elementwise", "Divide": "elementwise",
    "Maximum": "elementwise", "Minimum": "elementwise", "Square": "elementwise", "Square Root": "elementwise",
    "Reciprocal Square Root": "elementwise", "Squared Difference": "elementwise",
    "HardSwish": "activation", "Sigmoid": "activation", "Tanh": "activation", "GELU": "activation",
    "ELU": "activation", "Leaky ReLU": "activation", "Clamp": "activation", "Exp": "activation",
    "Negate": "activation", "Abs": "activation", "Log": "activation",
    "Mean": "pool / reduce", "Sum": "pool / reduce", "Global Average Pooling": "pool / reduce",
    "Average Pooling": "pool / reduce", "Max Pooling": "pool / reduce", "Max": "pool / reduce",
    "Convert": "quantize / dequantize",
}

# aten op -> XNNPACK operator names it can become (the alignment's "compatible" test).
NODE_KERNELS = {
    "convolution": ("Convolution", "Fully Connected", "Deconvolution"),
    "linear": ("Fully Connected",), "addmm": ("Fully Connected",), "mm": ("Fully Connected",),
    "bmm": ("Batch Matrix Multiply",), "_softmax": ("Softmax",), "softmax": ("Softmax",),
    "permute_copy": ("Transpose", "Copy"), "_to_copy": ("Transpose", "Copy", "Convert"),
    "_to_dim_order_copy": ("Transpose", "Copy", "Convert"), "clone": ("Copy",),
    "view_copy": ("Static Reshape", "Copy"), "squeeze_copy": ("Static Reshape", "Copy"),
    "unsqueeze_copy": ("Static Reshape", "Copy"), "expand_copy": ("Copy", "Broadcast"),
    "slice_copy": ("Slice", "Copy"), "cat": ("Concatenate", "Copy"),
    "split_with_sizes_copy": ("Even Split", "Slice"), "constant_pad_nd": ("Constant Pad",),
    "add": ("Add",), "mul": ("Multiply",), "sub": ("Subtract",), "div": ("Divide",),
    "maximum": ("Maximum",), "minimum": ("Minimum",), "rsqrt": ("Reciprocal Square Root",), "sqrt": ("Square Root",),
    "hardswish": ("HardSwish",), "sigmoid": ("Sigmoid",), "tanh": ("Tanh",), "gelu": ("GELU",), "elu": ("ELU",),
    "leaky_relu": ("Leaky ReLU",), "relu": ("Clamp",), "hardtanh": ("Clamp",), "clamp": ("Clamp",),
    "exp": ("Exp",), "neg": ("Negate",), "abs": ("Abs",), "log": ("Log",),
    "mean": ("Mean", "Global Average Pooling"), "sum": ("Sum", "Mean"), "amax": ("Max",),
    "avg_pool2d": ("Average Pooling", "Global Average Pooling"), "max_pool2d": ("Max Pooling",),
    "max_pool2d_with_indices": ("Max Pooling",), "upsample_bilinear2d": ("Resize Bilinear",),
    "quantize_per_tensor": ("Convert",), "dequantize_per_tensor": ("Convert",),
    "quantize_per_channel": ("Convert",), "dequantize_per_channel": ("Convert",),
}


def kernel_base(event_name: str) -> str:
    """'Convolution (NHWC, F32) IGEMM #3' -> 'Convolution'; 'Mean (ND) Reduce2 #1' -> 'Mean'."""
    return re.split(r" \(| #", event_name, maxsplit=1)[0].strip()


def kernel_class(event_name: str, aten_op: str | None = None) -> str:
    """Op class of an XNNPACK kernel (depthwise convs get their own class: they are memory-bound)."""
    base = kernel_base(event_name)
    cls = KERNEL_CLASS.get(base, "other")
    if base == "Convolution" and "DWConv" in event_name:
        return "depthwise conv"
    return cls


def aten_class(aten_op: str) -> str:
    """Op class of a non-delegated op (its name is the aten op)."""
    for node_op, kernels in NODE_KERNELS.items():
        if aten_op == node_op:
            return KERNEL_CLASS.get(kernels[0], "other")
    return "other"


# ---- block types from the module hierarchy --------------------------------------------------------------------------

DATA_MOVEMENT_OPS = {"view_copy", "slice_copy", "permute_copy", "cat", "_to_copy", "_to_dim_order_copy", "clone",
                     "squeeze_copy", "unsqueeze_copy", "expand_copy", "split_with_sizes_copy"}


def block_type(stack: Sequence[Sequence[str]], op: str = "") -> str:
    """The block type of an op from its module stack [(path, class name), ...] outermost first (and its aten op).

    Why rules on class names: the families share building blocks (InvertedResidual, attention modules, FFNs), so
    one table names the same kind of block the same way in every family. MobileViT's patch regrouping runs in
    PatchMixer's forward through PatchGrid methods (no module call), so data movement directly in a PatchMixer is
    the regrouping; its other direct ops (conv_in, norm, proj) are the transformer's in/out projections.
    """
    for _path, cls in reversed(list(stack)):
        name = cls.rsplit(".", 1)[-1]
        if name == "PatchMixer":
            return "patch regroup" if op in DATA_MOVEMENT_OPS else "transformer in/out proj"
        if "Attention" in name:
            return "attention"
        if "FFN" in name or "Mlp" in name:
            return "FFN"
        if name in ("InvertedResidual", "DepthwiseSeparable") or "MBConv" in name:
            return "MV2"
        if name in ("PatchGrid",):
            return "patch regroup"
        if name == "ConditionalPosEnc":
            return "pos-enc"
        if name in ("BranchGate",):
            return "branch gate"
        if name in ("ClassifierHead", "BNLinear"):
            return "head"
        if name == "Residual":  # LeViT / C-C-T-T MLP residuals (attention ones matched above)
            return "FFN"
    paths = [p for p, _ in stack if p]
    top = paths[0].split(".")[0] if paths else ""
    if top.startswith("stem"):
        return "stem"
    if top.startswith("head") or top in ("final_conv", "head_conv"):
        return "head"
    if any(c.rsplit(".", 1)[-1] in ("MobileViTBlock", "MobileViTv2Block") for _, c in stack):
        return "local/fusion conv"
    return "other" if top else "graph I/O"


def stage_of(module_path: str) -> str:
    """Top-level stage of a module path ('layer3.1.mixer' -> 'layer3', 'body.stage1.0' -> 'body.stage1')."""
    if not module_path:
        return "graph I/O"
    parts = module_path.split(".")
    if parts[0] == "body" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


# ---- MACs per node -------------------------------------------------------------------------------------------------

def _shape(v: Any) -> tuple[int, ...] | None:
    s = getattr(v, "shape", None)
    return tuple(int(d) for d in s) if s is not None else None


def node_macs(op: str, out_shape: tuple[int, ...] | None, arg_shapes: list[tuple[int, ...] | None]) -> int:
    """Multiply-accumulates of one conv / linear / matmul node from its shapes (0 for every other op)."""
    import math
    if not out_shape:
        return 0
    out = math.prod(out_shape)
    if op == "convolution" and len(arg_shapes) > 1 and arg_shapes[1]:
        w = arg_shapes[1]  # (Cout, Cin / groups, kh, kw)
        return out * math.prod(w[1:])
    if op == "linear" and len(arg_shapes) > 1 and arg_shapes[1]:
        return out * arg_shapes[1][-1]
    if op in ("mm", "bmm") and arg_shapes and arg_shapes[0]:
        return out * arg_shapes[0][-1]
    if op == "addmm" and len(arg_shapes) > 1 and arg_shapes[1]:
        return out * arg_shapes[1][-1]
    return 0


def _aten_name(target: Any) -> str:
    """'aten.convolution.default' -> 'convolution'; quantized_decomposed ops keep their base name."""
    name = getattr(target, "__name__", str(target))
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 else parts[0]


def _node_record(n: Any) -> dict[str, Any]:
    stack = [(str(p), str(c)) for p, c in (n.meta.get("nn_module_stack") or {}).values()]
    op = _aten_name(n.target)
    args = [a for a in n.args if hasattr(a, "meta")]
    return {"op": op, "module": stack[-1][0] if stack else "", "stack": stack,
            "shape": list(_shape(n.meta.get("val")) or ()),
            "macs": int(node_macs(op, _shape(n.meta.get("val")), [_shape(a.meta.get("val")) for a in args]))}


# ---- the map: re-create the lowering from the manifest ---------------------------------------------------------------

def cache_dir() -> Path:
    d = Path(os.environ.get("EDGE_SDK_CACHE") or Path.home() / ".cache" / "edge-sdk")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """Read a manifest field from the typed Manifest (issue-9 contract) or from the plain dict of schema 1."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _recreate_model(manifest: Any):  # noqa: ANN202 (torch module)
    from edge_sdk.models import create_model, reparameterize_model
    info = _field(manifest, "model")
    name, config = _field(info, "name"), dict(_field(info, "config") or {})
    num_classes = int(_field(info, "num_classes") or 1000)
    conversion = _field(manifest, "conversion") or {}
    size = conversion.get("input_size") if isinstance(conversion, dict) else None
    spec = config.get("path") or config.get("spec")
    if _field(info, "family") == "external" and spec:  # a .pt2 / file.py:factory source (issue 11)
        from edge_sdk.converters.sources import SourceOptions, resolve_source
        weights = Path(config["weights"]) if config.get("weights") else None
        try:
            model = resolve_source(str(spec), SourceOptions(input_size=size, weights=weights, num_classes=num_classes,
                                                            require_deploy=False)).model
        except EdgeError as exc:
            raise EdgeError(f"cannot re-create model {name!r} from {spec} to map ops to modules: {exc}") from exc
        return reparameterize_model(model).eval(), int(size or model.deploy.input_size)
    try:
        model = create_model(str(name), num_classes=num_classes, **config, **({"input_size": size} if size else {}))
    except EdgeError as exc:
        raise EdgeError(f"cannot re-create model {name!r} from the manifest to map ops to modules: {exc}") from exc
    return reparameterize_model(model).eval(), int(size or model.deploy.input_size)


def build_op_map(manifest: Any) -> dict[str, Any]:
    """Node sequence of every XNNPACK partition (as the delegate visits it) + debug handles of ops outside.

    Re-lowers the manifest's model with the converter's own export / quantize / lower steps (random weights; the
    calibration batch is random too: quantization parameters do not change the graph).
    """
    import torch
    from executorch.exir.lowered_backend_module import get_lowered_submodules

    from edge_sdk.converters import executorch as et_conv
    from edge_sdk.converters.base import ConvertOptions
    precision = str(_field(manifest, "precision") or "fp32")
    backend = str(_field(manifest, "backend") or "xnnpack")
    if backend != "xnnpack":
        raise UsageError(f"profile needs an XNNPACK .pte; this bundle is delegated to {backend}")
    model, size = _recreate_model(manifest)
    torch.manual_seed(0)
    example = torch.randn(1, 3, size, size)
    if precision in ("int8", "mixed"):
        program = et_conv.quantize(model, example, precision, lambda: [torch.randn(2, 3, size, size)])
    else:
        program = et_conv.export_program(model, example)
    edge = et_conv.lower(program, backend, ConvertOptions(precision=precision, backend=backend))
    report = et_conv.delegation_report(edge, backend)
    delegates = [[_node_record(n) for n in _delegate_nodes(lowered.original_module)]
                 for _, lowered, _ in get_lowered_submodules(edge.exported_program().graph_module)]
    et = edge.to_executorch()
    outside = {}
    for n in et.exported_program().graph.nodes:
        handle = n.meta.get("debug_handle")
        if n.op == "call_function" and handle is not None and "call_delegate" not in str(n.target):
            outside[str(handle)] = _node_record(n)
    return {"delegates": delegates, "outside": outside, "delegated_by_op": report["delegated_by_op"],
            "delegated_subgraphs": report["delegated_subgraphs"]}


def _delegate_nodes(original: Any) -> list[Any]:
    """The call_function nodes of one partition after the XNNPACK delegate's own passes, in the order it serializes
    them (xnnpack_preprocess runs the same pass manager before visiting nodes)."""
    from executorch.backends.xnnpack._passes import XNNPACKPassManager
    from executorch.backends.xnnpack.xnnpack_preprocess import get_xnnpack_edge_compile_config
    from executorch.exir.verification.verifier import EXIREdgeDialectVerifier
    from torch.export import ExportedProgram
    ep = ExportedProgram(
        root=original.graph_module, graph=original.graph, graph_signature=original.graph_signature,
        state_dict=original.state_dict, range_constraints=original.range_constraints,
        module_call_graph=original.module_call_graph, example_inputs=original.example_inputs,
        constants=original.constants,
        verifiers=[EXIREdgeDialectVerifier(edge_compile_config=get_xnnpack_edge_compile_config(), class_only=True)])
    ep = XNNPACKPassManager(ep).transform()
    return [n for n in ep.graph_module.graph.nodes if n.op == "call_function" and _aten_name(n.target) != "getitem"]


def op_map(bundle: Any, rebuild: bool = False) -> dict[str, Any]:
    """The cached op map of a bundle (keyed by the model file's sha256)."""
    sha = _field(bundle.manifest, "sha256") or "nosha"
    path = cache_dir() / "profile-maps" / f"{sha}.json"
    if path.exists() and not rebuild:
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    data = build_op_map(bundle.manifest)
    from edge_sdk.bundle import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data))
    return data


# ---- alignment of XNNPACK events with the partition's nodes ---------------------------------------------------------

def align(events: Sequence[str], nodes: Sequence[dict[str, Any]], band: int | None = None) -> list[int | None]:
    """For each event name, the index of the node it ran (None: an operator XNNPACK inserted, e.g. a layout copy).

    Edit-distance alignment over op kinds (a node may vanish: XNNPACK fuses clamps into convs and elides no-op
    reshapes; an event may have no node). Order is preserved by both sides, so a band around the diagonal suffices.
    """
    n, m = len(events), len(nodes)
    if n == 0:
        return []
    band = band or max(64, abs(n - m) + 64)
    bases = [kernel_base(e) for e in events]
    compat = [set(NODE_KERNELS.get(nd["op"], ())) for nd in nodes]
    inf = float("inf")
    # cost[i][j]: best cost aligning events[:i] with nodes[:j]; only |j - i*m/n| <= band is filled.
    cost: list[dict[int, float]] = [dict() for _ in range(n + 1)]
    back: list[dict[int, int]] = [dict() for _ in range(n + 1)]

    def window(i: int) -> range:
        c = round(i * m / n) if n else 0
        return range(max(0, c - band), min(m, c + band) + 1)

    for i in range(n + 1):
        for j in window(i):
            if i == 0 and j == 0:
                cost[0][0] = 0.0
                continue
            best, move = inf, -1
            if j > 0 and (j - 1) in cost[i]:  # node j-1 produced no event
                best, move = cost[i][j - 1] + 1.0, 0
            if i > 0 and j in cost[i - 1] and cost[i - 1][j] + 1.0 < best:  # event i-1 has no node
                best, move = cost[i - 1][j] + 1.0, 1
            if i > 0 and j > 0 and (j - 1) in cost[i - 1] and bases[i - 1] in compat[j - 1] \
                    and cost[i - 1][j - 1] < best:
                best, move = cost[i - 1][j - 1], 2
            if move >= 0:
                cost[i][j], back[i][j] = best, move
    if m not in cost[n]:
        return align(events, nodes, band * 2) if band < max(n, m) else [None] * n
    out: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 or j > 0:
        move = back[i][j]
        if move == 2:
            out[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    return out


# ---- the result ----------------------------------------------------------------------------------------------------

@dataclass
class OpTime:
    """One timed op: an XNNPACK kernel or an op left outside the delegate."""

    name: str  # the runtime's event name
    op: str  # aten op it came from ('' when XNNPACK inserted it)
    op_class: str
    module: str  # module path in the model ('' for graph I/O)
    block: str
    stage: str
    ms: float  # mean over the timed runs
    macs: int = 0
    delegated: bool = True
    inferred_module: bool = False  # module taken from the neighbouring op (XNNPACK-inserted operator)


@dataclass
class Group:
    name: str
    ms: float
    share: float
    macs: int
    ops: int
    gmacs_per_s: float | None
    pct_of_peak: float | None


@dataclass
class Profile:
    bundle: str
    model: str
    runtime: str
    precision: str
    threads: int
    runs: int
    execute_ms: float  # mean wall time of one Method::execute (timed runs)
    ops: list[OpTime]
    peak_gmacs_per_s: float | None
    model_macs: int | None
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def kernel_ms(self) -> float:
        return sum(o.ms for o in self.ops)

    @property
    def overhead_ms(self) -> float:
        return max(0.0, self.execute_ms - self.kernel_ms)

    @property
    def total_ms(self) -> float:
        """What shares are relative to: the execute time, or the kernel sum if timer rounding makes it larger."""
        return max(self.execute_ms, self.kernel_ms)

    def _group(self, name: str, ops: list[OpTime]) -> Group:
        ms = sum(o.ms for o in ops)
        macs = sum(o.macs for o in ops)
        g = macs / (ms * 1e6) if macs and ms > 0 else None
        pct = 100.0 * g / self.peak_gmacs_per_s if g and self.peak_gmacs_per_s else None
        return Group(name, ms, 100.0 * ms / self.total_ms if self.total_ms > 0 else 0.0, macs, len(ops), g, pct)

    def groups(self, key: str) -> list[Group]:
        """Ops grouped by `op_class`, `block`, `stage` or `module`, plus the overhead row; shares add to 100%."""
        buckets: dict[str, list[OpTime]] = {}
        for o in self.ops:
            buckets.setdefault(getattr(o, key) or "graph I/O", []).append(o)
        rows = [self._group(k, v) for k, v in buckets.items()]
        rows.sort(key=lambda r: -r.ms)
        if self.total_ms > self.kernel_ms:
            rows.append(Group(OVERHEAD, self.overhead_ms, 100.0 * self.overhead_ms / self.total_ms, 0, 0, None, None))
        return rows

    def top(self, k: int) -> list[tuple[OpTime, float, float | None]]:
        """The k slowest ops with their share of the total and their GMAC/s."""
        ranked = sorted(self.ops, key=lambda o: -o.ms)[:k]
        return [(o, 100.0 * o.ms / self.total_ms if self.total_ms else 0.0,
                 o.macs / (o.ms * 1e6) if o.macs and o.ms > 0 else None) for o in ranked]

    @property
    def achieved_gmacs_per_s(self) -> float | None:
        macs = self.model_macs or sum(o.macs for o in self.ops)
        return macs / (self.execute_ms * 1e6) if macs and self.execute_ms > 0 else None

    def to_dict(self, top_k: int = 20) -> dict[str, Any]:
        g = self.achieved_gmacs_per_s
        return {"bundle": self.bundle, "model": self.model, "runtime": self.runtime, "precision": self.precision,
                "threads": self.threads, "runs": self.runs, "execute_ms": self.execute_ms,
                "kernel_ms": self.kernel_ms, "overhead_ms": self.overhead_ms, "model_macs": self.model_macs,
                "gmacs_per_s": g, "peak_gmacs_per_s": self.peak_gmacs_per_s,
                "pct_of_peak": 100.0 * g / self.peak_gmacs_per_s if g and self.peak_gmacs_per_s else None,
                "top": [{**asdict(o), "share": s, "gmacs_per_s": gm} for o, s, gm in self.top(top_k)],
                "by_op_class": [asdict(r) for r in self.groups("op_class")],
                "by_block": [asdict(r) for r in self.groups("block")],
                "by_stage": [asdict(r) for r in self.groups("stage")],
                "ops": [asdict(o) for o in self.ops], "notes": self.notes, "machine": self.machine}


# ---- running the .pte with ETDump ------------------------------------------------------------------------------------

def _input_shape(manifest: Any) -> list[int]:
    spec = _field(manifest, "input")
    shape = _field(spec, "shape")
    if not shape:
        crop = int(_field(spec, "crop"))
        shape = [1, 3, crop, crop]
    return [int(d) if int(d) > 0 else 1 for d in shape]


def run_etdump(pte: Path, shape: Sequence[int], warmup: int, runs: int, workdir: Path) -> tuple[list[Any], float]:
    """Execute the program with ETDump on; returns (Execute-block events, mean execute ms of the timed runs)."""
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    from edge_sdk.runtime import engines
    engines.check_identifier(pte, engines.PTE_IDENT_PREFIX, "ExecuTorch .pte", prefix=True)
    engines._ET_LOADED = True  # the thread pool may no longer be resized in this process
    try:
        program = Runtime.get().load_program(str(pte), enable_etdump=True, debug_buffer_size=0)
        method = program.load_method("forward")
    except Exception as exc:
        raise EdgeError(f"ExecuTorch could not load {pte.name}: {str(exc).splitlines()[0][:300]}") from exc
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    for _ in range(warmup + runs):
        method.execute([x])
    etdp, dbg = workdir / "model.etdp", workdir / "debug.bin"
    program.write_etdump_result_to_file(str(etdp), str(dbg))
    import warnings

    from executorch.devtools import Inspector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspector = Inspector(etdump_path=str(etdp))
    block = next((b for b in inspector.event_blocks if b.name == "Execute"), None)
    if block is None:
        raise EdgeError("the ETDump has no Execute block (was the program run?)")
    events = list(block.events)
    execute = [e for e in events if e.name == "Method::execute"]
    ex_ms = _mean_ms(execute[0], warmup) if execute else float("nan")
    return [e for e in events if e.name != "Method::execute"], ex_ms


def _mean_ms(event: Any, warmup: int) -> float:
    """Mean over the timed runs: ETDump stamps XNNPACK kernels in whole microseconds, so a median of a 2 us kernel
    is 2 or 3 while the mean keeps sub-microsecond resolution and kernel means add up to the execute mean."""
    if event.perf_data is None:
        return 0.0
    return float(statistics.fmean(_timed(event.perf_data.raw, warmup)))


def _timed(raw: Sequence[float], warmup: int) -> list[float]:
    """Drop the warm-up runs' samples when the event fired once per run."""
    raw = list(raw)
    return raw[warmup:] if len(raw) > warmup else raw


def attribute(events: Sequence[Any], omap: dict[str, Any], warmup: int) -> tuple[list[OpTime], list[str]]:
    """Events -> OpTime rows with modules: delegated kernels by alignment, other ops by debug handle."""
    ops: list[OpTime] = []
    notes: list[str] = []
    pending: list[Any] = []
    delegate_index = 0
    for e in events:
        if e.name == "DELEGATE_CALL":
            nodes = omap["delegates"][delegate_index] if delegate_index < len(omap["delegates"]) else []
            ops.extend(_delegated_rows(pending, nodes, warmup))
            pending, delegate_index = [], delegate_index + 1
        elif e.is_delegated_op:
            pending.append(e)
        elif e.perf_data is not None:
            ops.append(_outside_row(e, omap["outside"], warmup))
    if pending:  # kernels after the last DELEGATE_CALL marker (should not happen)
        ops.extend(_delegated_rows(pending, [], warmup))
    matched = sum(1 for o in ops if o.delegated and not o.inferred_module)
    delegated = sum(1 for o in ops if o.delegated)
    if delegated:
        notes.append(f"{matched} of {delegated} XNNPACK kernels matched to a graph node; the other "
                     f"{delegated - matched} (layout transposes/copies XNNPACK inserted) take the module of their "
                     "neighbour")
    return ops, notes


def _delegated_rows(events: Sequence[Any], nodes: Sequence[dict[str, Any]], warmup: int) -> list[OpTime]:
    names = [e.name for e in events]
    idx = align(names, nodes) if nodes else [None] * len(names)
    rows, last = [], next((nodes[i] for i in idx if i is not None), None)
    for e, i in zip(events, idx):
        node = nodes[i] if i is not None else None
        ref = node or last or {"op": "", "module": "", "stack": [], "macs": 0}
        if node is not None:
            last = node
        rows.append(OpTime(name=e.name, op=node["op"] if node else "", op_class=kernel_class(e.name),
                           module=ref["module"], block=block_type(ref["stack"], ref["op"]),
                           stage=stage_of(ref["module"]), ms=_mean_ms(e, warmup),
                           macs=int(node["macs"]) if node else 0, delegated=True, inferred_module=node is None))
    return rows


def _outside_row(e: Any, outside: dict[str, Any], warmup: int) -> OpTime:
    handles = e.debug_handles if isinstance(e.debug_handles, (list, tuple)) else [e.debug_handles]
    node = next((outside[str(h)] for h in handles if str(h) in outside), None)
    op = node["op"] if node else e.name.replace("native_call_", "").split(".")[0]
    ref = node or {"module": "", "stack": [], "macs": 0}
    return OpTime(name=e.name, op=op, op_class=aten_class(op), module=ref["module"],
                  block=block_type(ref["stack"], op),
                  stage=stage_of(ref["module"]), ms=_mean_ms(e, warmup),
                  macs=int(ref["macs"]), delegated=False, inferred_module=node is None)


def profile_pte(bundle: Any, threads: int = 1, warmup: int = 3, runs: int = 20, peak: bool = True,
                rebuild_map: bool = False) -> Profile:
    """Profile an XNNPACK .pte bundle in this process (the thread count is set before anything is loaded)."""
    from edge_sdk.runtime import engines
    engines.set_executorch_threads(threads)
    manifest = bundle.manifest
    notes: list[str] = []
    omap = op_map(bundle, rebuild=rebuild_map)
    recorded = (_field(manifest, "report") or {}).get("delegated_by_op")
    if recorded and recorded != omap["delegated_by_op"]:
        notes.append("the re-created lowering differs from the bundle's recorded delegation (converted with another "
                     "edge-sdk or options?): module names are approximate")
    peak_value = gemm_peak(threads) if peak else None
    with tempfile.TemporaryDirectory(prefix="edge-sdk-profile-") as tmp:
        events, ex_ms = run_etdump(bundle.model_file, _input_shape(manifest), warmup, runs, Path(tmp))
    ops, more = attribute(events, omap, warmup)
    from edge_sdk.machine import machine_info
    info = _field(manifest, "model")
    return Profile(bundle=str(bundle.path), model=str(_field(info, "name")), runtime="executorch-xnnpack",
                   precision=str(_field(manifest, "precision")), threads=threads, runs=runs, execute_ms=ex_ms,
                   ops=ops, peak_gmacs_per_s=peak_value, model_macs=_field(info, "macs"), notes=notes + more,
                   machine=machine_info())


# ---- the GEMM peak -------------------------------------------------------------------------------------------------

PEAK_MARK = "EDGE_SDK_PEAK "


def build_gemm_pte(path: Path, shape: tuple[int, int, int] = GEMM_SHAPE) -> Path:
    """A rows x k @ k x n Linear lowered to XNNPACK: the runtime's own GEMM, not torch.matmul."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edge_sdk.bundle import atomic_write
    rows, k, n = shape
    torch.manual_seed(0)
    lin = torch.nn.Linear(k, n, bias=False).eval()
    ep = torch.export.export(lin, (torch.randn(rows, k),))
    atomic_write(path, to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return path


def measure_gemm(pte: Path, threads: int | None, runs: int = 20, shape: tuple[int, int, int] = GEMM_SHAPE) -> float:
    """Best-of-`runs` GMAC/s of the GEMM .pte in this process."""
    import numpy as np

    from edge_sdk.runtime.engines import open_executorch
    run = open_executorch(pte, threads=threads)
    rows, k, n = shape
    x = np.random.default_rng(0).standard_normal((rows, k)).astype(np.float32)
    for _ in range(3):
        run(x)
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        best = min(best, time.perf_counter() - t0)
    return rows * k * n / best / 1e9


def _peak_key(threads: int) -> str:
    from edge_sdk import doctor
    from edge_sdk.machine import machine_info
    m = machine_info()
    return f"{m['cpu']}|{m['cores']} cores|{threads} threads|executorch {doctor.toolchain_versions().get('executorch')}"


def gemm_peak(threads: int, remeasure: bool = False) -> float:
    """This machine's XNNPACK GEMM peak (GMAC/s) at `threads`, measured once in a fresh process and cached."""
    from edge_sdk.bundle import atomic_write
    cache = cache_dir() / "gemm_peak.json"
    table = json.loads(cache.read_text()) if cache.exists() else {}
    key = _peak_key(threads)
    if key in table and not remeasure:
        return float(table[key]["gmacs_per_s"])
    pte = cache_dir() / f"gemm_{'x'.join(map(str, GEMM_SHAPE))}.pte"
    if not pte.exists():
        build_gemm_pte(pte)
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.profile", "--peak-worker", str(pte), str(threads)],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)),
                          timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(PEAK_MARK)), None)
    if line is None:
        raise EdgeError(f"GEMM peak measurement failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    value = float(json.loads(line[len(PEAK_MARK):])["gmacs_per_s"])
    table = json.loads(cache.read_text()) if cache.exists() else {}
    table[key] = {"gmacs_per_s": value, "shape": list(GEMM_SHAPE), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime())}
    atomic_write(cache, json.dumps(table, indent=2) + "\n")
    return value


# ---- TFLite: what Python can tell ------------------------------------------------------------------------------------

TFLITE_NOT_AVAILABLE = ("per-op timing is not available for .tflite from Python: ai-edge-litert's Interpreter has no "
                        "op profiler. For per-op times use LiteRT's benchmark tool: benchmark_model "
                        "--graph=model.tflite --num_threads=1 --use_xnnpack=true --enable_op_profiling=true "
                        "(on a phone: edge-sdk bench BUNDLE --device adb --runner benchmark_model), or profile the "
                        "ExecuTorch bundle of the same model (edge-sdk profile on its .pte).")

def xnnpack_outside(model: Path | bytes, threads: int = 1) -> tuple[int, int, list[dict[str, Any]]]:
    """(XNNPACK partitions, ops, the ops left to TFLite's own kernels) of a .tflite file or flatbuffer.

    After `allocate_tensors` the interpreter's node list holds the original ops followed by one DELEGATE node per
    XNNPACK partition. An op is outside XNNPACK when its output feeds a partition or the graph output (or another
    outside op that does) without being produced by one: exactly the "islands" that split the graph. Each
    returned op has `op` (type), `tensor` (its first output's name) and `dtype` (that output's dtype).
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    src = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    interp = Interpreter(num_threads=threads, **src)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    n_ops = len(interp._get_ops_details())
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    original, delegates = ops[:n_ops], [o for o in ops[n_ops:] if o["op_name"] == "DELEGATE"]
    made_inside = {int(t) for d in delegates for t in d["outputs"]}
    producer = {int(t): o for o in original for t in o["outputs"]}
    outside: dict[int, dict[str, Any]] = {}
    todo = [int(t) for d in delegates for t in d["inputs"]] + [int(d["index"]) for d in interp.get_output_details()]
    while todo:
        t = todo.pop()
        op = producer.get(t)
        if op is None or t in made_inside or op["index"] in outside:
            continue
        outside[op["index"]] = op
        todo.extend(int(i) for i in op["inputs"] if i >= 0)
    if not delegates:  # nothing delegated: every op is outside
        outside = {o["index"]: o for o in original}
    rows = []
    for op in sorted(outside.values(), key=lambda o: o["index"]):
        out = tensors.get(int(op["outputs"][0]), {}) if len(op["outputs"]) else {}
        rows.append({"op": op["op_name"], "tensor": out.get("name", ""),
                     "dtype": np.dtype(out["dtype"]).name if "dtype" in out else "?"})
    return len(delegates), n_ops, rows


def tflite_partitions(path: Path, threads: int) -> dict[str, Any]:
    """XNNPACK partitions of a .tflite and the ops left outside them, counted by op type."""
    from collections import Counter
    partitions, n_ops, outside = xnnpack_outside(path, threads)
    return {"partitions": partitions, "ops": n_ops, "ops_outside": len(outside),
            "outside_by_op": dict(Counter(o["op"] for o in outside).most_common())}


def tflite_static(path: Path) -> list[dict[str, Any]]:
    """Ops per type with their MACs (conv, depthwise, fully connected, batch matmul) and output dtype."""
    import math

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for op in interp._get_ops_details():
        name = op["op_name"]
        outs = [tensors[i] for i in op["outputs"] if i in tensors]
        ins = [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors]
        dtype = np.dtype(outs[0]["dtype"]).name if outs else "?"
        out_n = math.prod(int(d) for d in outs[0]["shape"]) if outs else 0
        macs = 0
        if name == "CONV_2D" and len(ins) > 1:
            macs = out_n * math.prod(int(d) for d in ins[1]["shape"][1:])
        elif name == "DEPTHWISE_CONV_2D" and len(ins) > 1:
            macs = out_n * int(ins[1]["shape"][1]) * int(ins[1]["shape"][2])
        elif name in ("FULLY_CONNECTED", "BATCH_MATMUL") and ins:
            macs = out_n * int(ins[0]["shape"][-1])
        r = rows.setdefault((name, dtype), {"op": name, "dtype": dtype, "count": 0, "macs": 0})
        r["count"] += 1
        r["macs"] += macs
    return sorted(rows.values(), key=lambda r: (-r["macs"], -r["count"]))


def profile_tflite(bundle: Any, threads: int = 1, warmup: int = 3, runs: int = 20) -> dict[str, Any]:
    """The honest .tflite profile: no per-op times, but latency, partitions and the op/MAC breakdown."""
    import numpy as np

    from edge_sdk.runtime.engines import open_tflite
    path = bundle.model_file
    run = open_tflite(path, threads=threads)
    from ai_edge_litert.interpreter import Interpreter
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    x = np.zeros(detail["shape"], dtype=detail["dtype"])
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    info = _field(bundle.manifest, "model")
    return {"bundle": str(bundle.path), "model": _field(info, "name"), "runtime": "litert",
            "precision": _field(bundle.manifest, "precision"), "threads": threads, "runs": runs,
            "per_op_timing": None, "not_available": TFLITE_NOT_AVAILABLE,
            "median_ms": float(statistics.median(times)), "model_macs": _field(info, "macs"),
            "xnnpack": tflite_partitions(path, threads), "ops": tflite_static(path)}


def profile_bundle(path: str | Path, threads: int = 1, warmup: int = 3, runs: int = 20, peak: bool = True,
                   rebuild_map: bool = False) -> Profile | dict[str, Any]:
    """Profile any bundle: a Profile for .pte, the 'not available' dict for .tflite; other targets are refused."""
    from edge_sdk.bundle import read_bundle
    bundle = read_bundle(path)
    target = _field(bundle.manifest, "target")
    if target == "executorch":
        return profile_pte(bundle, threads, warmup, runs, peak, rebuild_map)
    if target == "tflite":
        return profile_tflite(bundle, threads, warmup, runs)
    raise UsageError(f"profile supports ExecuTorch .pte and TFLite bundles, not {target} (Core ML packages run only "
                     "on macOS: use Xcode's Core ML performance report there)")


def _peak_worker(pte: str, threads: int) -> None:
    print(PEAK_MARK + json.dumps({"gmacs_per_s": measure_gemm(Path(pte), threads)}), flush=True)


def iter_rows(groups: Iterable[Group]) -> Iterable[list[str]]:
    """Table cells of grouped rows (for the CLI and docs)."""
    for g in groups:
        yield [g.name, f"{g.ms:.3f}", f"{g.share:.1f}%", f"{g.macs / 1e6:.1f}" if g.macs else "",
               f"{g.gmacs_per_s:.1f}" if g.gmacs_per_s else "", f"{g.pct_of_peak:.0f}%" if g.pct_of_peak else "",
               str(g.ops)]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--peak-worker":
        _peak_worker(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    sys.exit("usage: python -m edge_sdk.profile --peak-worker PTE THREADS (internal; use `edge-sdk profile`)")

