"""Low-level engines: open a model file with its native runtime and get `run(np.ndarray) -> np.ndarray`.

Used both by converters (parity right after conversion) and by the Predictor harness. Inputs/outputs here are raw
tensors in the model file's own layout and dtype; preprocessing and layout live in the Predictor.

Native runtimes can crash on malformed files, so each opener checks the file identifier first.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Callable

import numpy as np

from edge_sdk.errors import EdgeError

RunFn = Callable[[np.ndarray], np.ndarray]

# FlatBuffer file identifiers live at bytes 4..8.
PTE_IDENT_PREFIX = b"ET"  # ExecuTorch program: "ET12", "ET13", ...
TFLITE_IDENT = b"TFL3"


def check_identifier(path: Path, expected: bytes, kind: str, prefix: bool = False) -> None:
    """Refuse files that are not what their suffix claims before native code sees them (no segfaults)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise EdgeError(f"cannot read {path}: {exc.strerror}") from exc
    ident = head[4:8]
    ok = len(head) == 8 and (ident.startswith(expected) if prefix else ident == expected)
    if not ok:
        raise EdgeError(f"{path} is not a valid {kind} file (file identifier {ident!r})")


_ET_THREADS: int | None = None  # the thread count set in this process, if any
_ET_LOADED = False  # a program was loaded: the pool may no longer be resized


def set_executorch_threads(threads: int | None) -> None:
    """Size ExecuTorch's thread pool. Only safe BEFORE any program is loaded in this process (measured: resetting it
    later corrupted the heap), so a different count after a load is refused; asking again for the same count is
    a no-op."""
    global _ET_THREADS
    if threads is None or threads == _ET_THREADS:
        return
    if int(threads) < 1:
        raise EdgeError(f"thread count must be >= 1, got {threads}")
    if _ET_THREADS is not None or _ET_LOADED:
        raise EdgeError("the ExecuTorch thread count can only be set once per process, before any program is "
                        "loaded; use a fresh process (edge-sdk bench does)")
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    _unsafe_reset_threadpool(int(threads))
    _ET_THREADS = int(threads)


def executorch_threads() -> int | None:
    """The thread count this process set for ExecuTorch (None: the library default)."""
    return _ET_THREADS


def open_executorch(path: str | Path, threads: int | None = None) -> RunFn:
    """Load a .pte with ExecuTorch's Python runtime (XNNPACK is built in)."""
    path = Path(path)
    check_identifier(path, PTE_IDENT_PREFIX, "ExecuTorch .pte", prefix=True)
    set_executorch_threads(threads)
    import torch
    from executorch.runtime import Runtime
    global _ET_LOADED
    _ET_LOADED = True
    try:
        method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as exc:
        raise EdgeError(f"ExecuTorch could not load {path.name} (truncated or corrupt program?): "
                        f"{str(exc).splitlines()[0][:300]}") from exc

    def run(x: np.ndarray) -> np.ndarray:
        out = method.execute([torch.from_numpy(np.ascontiguousarray(x))])
        return out[0].detach().numpy().copy()

    return run


def open_tflite(path: str | Path, threads: int | None = None) -> RunFn:
    """Load a .tflite with ai-edge-litert (XNNPACK CPU delegate by default) for a fixed input shape."""
    path = Path(path)
    check_identifier(path, TFLITE_IDENT, "TFLite")
    from ai_edge_litert.interpreter import Interpreter
    try:
        interp = Interpreter(model_path=str(path), num_threads=threads or 1)
        interp.allocate_tensors()
    except Exception as exc:
        raise EdgeError(f"LiteRT could not load {path.name} (truncated or corrupt model?): "
                        f"{str(exc).splitlines()[0][:300]}") from exc
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        if tuple(x.shape) != tuple(inp["shape"]) or x.dtype != inp["dtype"]:
            raise EdgeError(f"input must be {inp['dtype'].__name__}{list(inp['shape'])}, got {x.dtype}{list(x.shape)}")
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"]).copy()

    return run


def coreml_can_run() -> tuple[bool, str]:
    if platform.system() != "Darwin":
        return False, "Core ML packages execute only on macOS (this is Linux); run `edge-sdk validate` on a Mac"
    return True, ""


def open_coreml(path: str | Path, compute_units: str = "ALL") -> Callable[[dict], dict]:
    """Load an .mlpackage with coremltools (macOS only); returns run(feed dict) -> output dict."""
    ok, why = coreml_can_run()
    if not ok:
        raise EdgeError(f"needs macOS: {why}")
    import coremltools as ct
    units = getattr(ct.ComputeUnit, compute_units.upper(), None)
    if units is None:
        raise EdgeError(f"unknown Core ML compute units {compute_units}; use ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE")
    model = ct.models.MLModel(str(path), compute_units=units)
    return model.predict
