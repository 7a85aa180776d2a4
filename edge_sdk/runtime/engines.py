"""Low-level engines: open a model file with its native runtime and get `run(np.ndarray) -> np.ndarray`.

Used both by converters (parity right after conversion) and by the Predictor harness. Inputs/outputs here are raw
tensors in the model file's own layout and dtype; preprocessing and layout live in the Predictor.

Native runtimes can crash on malformed files, so each opener checks the file identifier (and, for .pte, the header
sizes) first, ExecuTorch's log sink is made byte-safe, and outputs are checked for NaN/inf. tests/fuzz/ measures
what still gets through (docs/runtime.md, "Untrusted files").
"""
from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import platform
import signal
import subprocess
import sys
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
    """Load a .pte with ExecuTorch's Python runtime (XNNPACK is built in), safely for untrusted files.

    Before native code reads the file: the identifier and the extended header's sizes are checked, ExecuTorch's log
    sink is made byte-safe (see `install_safe_executorch_log_sink`) and the program is loaded with full flatbuffer
    verification. Inputs are checked against the program's own method metadata before every execute.
    """
    path = Path(path)
    check_identifier(path, PTE_IDENT_PREFIX, "ExecuTorch .pte", prefix=True)
    check_pte_layout(path)
    if probe_enabled():
        probe_pte(path)
    try:
        import torch
        from executorch.runtime import Runtime, Verification
    except ImportError as exc:
        raise EdgeError(f"running a .pte needs torch and executorch ({exc.name or exc} is missing): "
                        "pip install 'edge-sdk[convert]'") from exc
    install_safe_executorch_log_sink()
    set_executorch_threads(threads)
    global _ET_LOADED
    _ET_LOADED = True
    _ET_ERRORS.clear()
    try:
        program = Runtime.get().load_program(str(path), verification=Verification.InternalConsistency)
        if "forward" not in program.method_names:
            raise EdgeError(f"{path.name} has no 'forward' method (has: {', '.join(sorted(program.method_names))})")
        method = program.load_method("forward")
        expected = _executorch_inputs(method.metadata)
    except EdgeError:
        raise
    except Exception as exc:
        why = _ET_ERRORS[0][:300] if _ET_ERRORS else _first_line(exc)
        raise EdgeError(f"ExecuTorch could not load {path.name} (truncated or corrupt program?): {why}") from exc

    def run(x: np.ndarray) -> np.ndarray:
        _check_executorch_input(x, expected)
        try:
            out = method.execute([torch.from_numpy(np.ascontiguousarray(x))])
        except Exception as exc:
            raise EdgeError(f"ExecuTorch failed to run {path.name}: {_first_line(exc)}") from exc
        if not out or not isinstance(out[0], torch.Tensor):
            raise EdgeError(f"{path.name} returned no tensor output")
        return check_finite(out[0].detach().numpy().copy(), path.name)

    run.expected_inputs = expected  # type: ignore[attr-defined]  # (shape, dtype) per input: the probe feeds zeros
    return run


# ---- the probe process: native crashes the in-process checks cannot stop -----------------------------------------
PROBE_ENV = "EDGE_SDK_PTE_PROBE"  # "0": trust .pte files (no probe); default: probe each new file once


def probe_enabled() -> bool:
    return os.environ.get(PROBE_ENV, "1").strip().lower() not in ("0", "no", "off", "false")


def _probe_cache_dir() -> Path:
    import importlib.metadata as md
    try:
        version = md.version("executorch")
    except md.PackageNotFoundError:
        version = "unknown"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edge-sdk" / f"pte-probed-executorch-{version}"


class _ProbeServer:
    """A long-lived child (`python -m edge_sdk.runtime.engines --probe-server`) that loads and runs model files sent
    to it; if it dies, the file that killed it is reported and a new child is started for the next file."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, PROBE_ENV: "0"}
        err = None if os.environ.get("EDGE_SDK_DEBUG") else subprocess.DEVNULL
        return subprocess.Popen([sys.executable, "-m", "edge_sdk.runtime.engines", "--probe-server"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, text=True)

    def check(self, path: Path) -> tuple[str, str]:
        """("ok" | "error" | "crash", detail)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        try:
            self.proc.stdin.write(json.dumps(str(path)) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            rc = self.proc.wait()
            self.proc = None
            name = signal.Signals(-rc).name if rc < 0 and -rc in signal.valid_signals() else f"exit status {rc}"
            return "crash", name
        kind, detail = json.loads(line)
        return kind, detail

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_PROBE = _ProbeServer()
atexit.register(_PROBE.close)
_PROBED: set[str] = set()  # sha256 of files that loaded and ran in the probe (this process)


def _runtime_name(path: Path) -> str:
    return "LiteRT" if path.suffix == ".tflite" else "ExecuTorch"


def probe_pte(path: Path) -> None:
    """Load and run a .pte once in the probe process before this process touches it.

    Why: measured with tests/fuzz (benchmarks/results/fuzz.md), about 1 in 1,000 byte-flipped .pte files passes
    ExecuTorch's flatbuffer verification and XNNPACK's header checks, then segfaults inside XNNPACK while the
    method loads (out-of-range values in the delegate graph). Nothing in-process can catch a segfault, so each new
    file is tried in a child first; the file's sha256 is remembered (in memory, and under ~/.cache/edge-sdk for
    this executorch version), so a bundle pays the ~2 s child start once. EDGE_SDK_PTE_PROBE=0 skips the probe
    for files you trust (a bench worker, which is a fresh process already).
    """
    import hashlib
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    marker = _probe_cache_dir() / digest
    if digest in _PROBED or marker.exists():
        return
    kind, detail = _PROBE.check(path.resolve())
    if kind == "crash" and detail.startswith("out of memory"):
        raise EdgeError(f"{_runtime_name(path)} ran {detail} loading {path.name} in a probe process: the file asks for far "
                        "more memory than its size explains (corrupt or hostile), so it was not loaded here")
    if kind == "crash":
        raise EdgeError(f"{_runtime_name(path)} crashed ({detail}) loading {path.name} in a probe process: the file is corrupt "
                        "or hostile, so it was not loaded here")
    if kind == "ok":
        _PROBED.add(digest)
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a read-only home: the in-memory set still saves repeated probes
    if kind == "error":  # refused there (under the memory cap): refuse here without trying the allocation
        raise EdgeError(f"{detail} (in the probe process)")


PROBE_MEMORY_BYTES = 4 << 30  # address space a probed program may add (+16x its file size): a memory bomb fails


def _limit_probe_memory(path: str) -> None:
    """Cap the probe child's address space at what it uses now plus a generous budget for this file.

    Why: `make fuzz` found flipped .pte files that load "fine" after allocating ~10 GB (a size field in the delegate
    graph). Under the cap the allocation fails, the probe reports a crash or an error, and the app's own process
    never tries the allocation.
    """
    try:
        import resource
        status = Path("/proc/self/status").read_text()
        vm_kb = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmSize:")))
        budget = max(PROBE_MEMORY_BYTES, 16 * os.path.getsize(path))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = vm_kb * 1024 + budget
        resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    except (OSError, ValueError, StopIteration, ImportError):
        pass  # not Linux: no cap, the probe still catches crashes


def _probe_server() -> None:
    """The probe child's loop: one JSON path per line in, one JSON [kind, detail] per line out."""
    for line in sys.stdin:
        try:
            path = json.loads(line)
            if path.endswith(".tflite"):
                from ai_edge_litert.interpreter import Interpreter  # noqa: F401  (before the memory cap)
                _limit_probe_memory(path)
                run = open_tflite(path)
            else:
                import executorch.runtime  # noqa: F401
                import torch  # noqa: F401
                _limit_probe_memory(path)
                run = open_executorch(path)
            shape, dtype = run.expected_inputs[0]
            run(np.zeros(shape, dtype if dtype is not None else np.float32))
            reply = ["ok", ""]
        except EdgeError as exc:
            reply = ["error", str(exc)]
        except MemoryError:
            reply = ["crash", "out of memory: over the probe's address-space cap"]
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            reply = ["error", _first_line(exc)]
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def check_finite(y: np.ndarray, name: str) -> np.ndarray:
    """A model that outputs NaN or inf has no meaningful top-k: fail instead of printing `nan`."""
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        bad = int(np.size(y) - np.isfinite(y).sum())
        raise EdgeError(f"{name} produced {bad} non-finite output value(s) (NaN/inf); the model file or its "
                        "weights are broken")
    return y


# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h) of the dtypes a bundle can feed.
_ET_DTYPES = {0: np.dtype(np.uint8), 1: np.dtype(np.int8), 2: np.dtype(np.int16), 3: np.dtype(np.int32),
              4: np.dtype(np.int64), 5: np.dtype(np.float16), 6: np.dtype(np.float32), 7: np.dtype(np.float64),
              11: np.dtype(np.bool_)}


def _executorch_inputs(meta) -> list[tuple[tuple[int, ...], np.dtype | None]]:  # noqa: ANN001
    """(shape, dtype) of every user input, read from the program (a bundle's manifest may no longer match it)."""
    specs = []
    for i in range(meta.num_inputs()):
        info = meta.input_tensor_meta(i)
        specs.append((tuple(int(d) for d in info.sizes()), _ET_DTYPES.get(int(info.dtype()))))
    return specs


def _check_executorch_input(x: np.ndarray, expected: list[tuple[tuple[int, ...], np.dtype | None]]) -> None:
    """Refuse what ExecuTorch would reject as `set_inputs() failed 0x10`, naming both shapes."""
    if len(expected) != 1:
        raise EdgeError(f"the program's forward method takes {len(expected)} inputs; bundles feed exactly one")
    shape, dtype = expected[0]
    if tuple(x.shape) != shape or (dtype is not None and x.dtype != dtype):
        want = f"{dtype.name if dtype is not None else '?'}{list(shape)}"
        raise EdgeError(f"the program expects input {want}, got {x.dtype.name}{list(x.shape)} (does the manifest's "
                        "crop, layout or dtype still match the model file?)")


def check_pte_layout(path: Path) -> None:
    """The extended header ('eh00' at bytes 8..12) states the program and segment sizes: they must fit the file.

    ExecuTorch bounds-checks these itself; checking here gives a clear message for the most common damage
    (a truncated download) before any native code runs.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(40)
    if head[8:12] != b"eh00" or len(head) < 32:
        return  # no extended header: a program without segments
    header_len = int.from_bytes(head[12:16], "little")
    program_size = int.from_bytes(head[16:24], "little")
    segment_base = int.from_bytes(head[24:32], "little")
    segment_size = int.from_bytes(head[32:40], "little") if header_len >= 32 and len(head) >= 40 else 0
    if program_size > size or segment_base > size or segment_base + segment_size > size:
        raise EdgeError(f"{path} is truncated or corrupt: its header describes {max(program_size, segment_base + segment_size)} "
                        f"bytes, the file has {size}")


_SAFE_SINK: bool | None = None  # None: not tried yet; True: ExecuTorch logs go through `_emit_executorch_log`
_SINK_KEEP: list = []  # the ctypes callback must live as long as the library can call it
ET_LOGGER = logging.getLogger("edge_sdk.executorch")  # ExecuTorch's C++ log lines, as bytes-safe text
_ET_ERRORS: list[str] = []  # the last error lines ExecuTorch logged: the first one says why a load failed
_ET_LEVELS = {ord("D"): logging.DEBUG, ord("I"): logging.INFO, ord("E"): logging.ERROR, ord("F"): logging.CRITICAL}


def _emit_executorch_log(timestamp: int, level: int, filename: bytes | None, function: bytes | None, line: int,
                         message: int | None, length: int) -> None:
    """ExecuTorch's log callback: never raises into C++ (that is std::terminate), decodes with backslashreplace."""
    try:
        raw = ctypes.string_at(message).decode("utf-8", "backslashreplace") if message else ""
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)  # file bytes: keep it one line
        where = (filename or b"?").decode("utf-8", "backslashreplace").rsplit("/", 1)[-1]
        lvl = _ET_LEVELS.get(level, logging.WARNING)
        if lvl >= logging.ERROR:
            _ET_ERRORS.append(text)
            del _ET_ERRORS[:-8]
        ET_LOGGER.log(lvl, "%s:%d] %s", where, line, text)
    except BaseException:  # noqa: BLE001 - an exception here would abort the process
        pass


def install_safe_executorch_log_sink() -> bool:
    """Replace ExecuTorch's C++ log sink by one that cannot abort the process; idempotent.

    Why: the pip pybindings register a sink that writes to std::cerr, which pybind11 redirects to sys.stderr
    during every call. A message built from a file's bytes (e.g. XNNPACK's "version identifier '%.4s'" for a
    damaged delegate blob) is not valid UTF-8; decoding it raises inside C++ and std::terminate aborts the process.
    ExecuTorch's log level is fixed at compile time, so the message cannot be suppressed, only received safely.
    The sink is a slot of the PAL table (`executorch::runtime::get_pal_impl()`); it is overwritten only after the
    table's other slots are checked to hold the default `et_pal_*` functions (so the layout is the one this code
    knows). Messages go to the `edge_sdk.executorch` logger. At exit the slot gets the runtime's own C sink
    (`et_pal_emit_log_message`, fprintf) so no Python callback runs after the interpreter is gone. Returns False,
    changing nothing, if the library does not look like that.
    """
    global _SAFE_SINK
    if _SAFE_SINK is not None:
        return _SAFE_SINK
    _SAFE_SINK = False
    try:
        import executorch.extension.pybindings.portable_lib as portable_lib
        lib_path = Path(portable_lib.__file__).resolve().parents[2] / "lib" / "libexecutorch.so"
        lib = ctypes.CDLL(str(lib_path), mode=getattr(ctypes, "RTLD_NOLOAD", 4) | ctypes.RTLD_GLOBAL)
        get_pal = lib["_ZN10executorch7runtime12get_pal_implEv"]
        get_pal.restype = ctypes.c_void_p
        table = get_pal()
        defaults = ["et_pal_init", "et_pal_abort", "et_pal_current_ticks", "et_pal_ticks_to_ns_multiplier",
                    None, "et_pal_allocate", "et_pal_free"]
        slots = [ctypes.c_void_p.from_address(table + 8 * i) for i in range(len(defaults))]
        for slot, name in zip(slots, defaults):
            if name is not None and slot.value != ctypes.cast(lib[name], ctypes.c_void_p).value:
                return False
        c_sink = ctypes.cast(lib["et_pal_emit_log_message"], ctypes.c_void_p).value
    except (OSError, AttributeError, ImportError):
        return False
    proto = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                             ctypes.c_void_p, ctypes.c_size_t)
    callback = proto(_emit_executorch_log)
    _SINK_KEEP.append(callback)
    slots[4].value = ctypes.cast(callback, ctypes.c_void_p).value
    atexit.register(lambda: setattr(slots[4], "value", c_sink))
    _SAFE_SINK = True
    return True


def open_tflite(path: str | Path, threads: int | None = None) -> RunFn:
    """Load a .tflite with ai-edge-litert (XNNPACK CPU delegate by default) for a fixed input shape."""
    path = Path(path)
    check_identifier(path, TFLITE_IDENT, "TFLite")
    if probe_enabled():
        probe_pte(path)  # LiteRT too: the long fuzz run found a flipped .tflite that segfaults in invoke
    from ai_edge_litert.interpreter import Interpreter
    try:
        interp = Interpreter(model_path=str(path), num_threads=threads or 1)
        interp.allocate_tensors()
        ins, outs = interp.get_input_details(), interp.get_output_details()  # names can be non-UTF-8 bytes
    except Exception as exc:
        raise EdgeError(f"LiteRT could not load {path.name} (truncated or corrupt model?): "
                        f"{_first_line(exc)}") from exc
    if len(ins) != 1 or len(outs) < 1:
        raise EdgeError(f"{path.name} has {len(ins)} inputs and {len(outs)} outputs; bundles need 1 input")
    inp, out = ins[0], outs[0]

    def run(x: np.ndarray) -> np.ndarray:
        if tuple(x.shape) != tuple(inp["shape"]) or x.dtype != inp["dtype"]:
            raise EdgeError(f"input must be {inp['dtype'].__name__}{list(inp['shape'])}, got {x.dtype}{list(x.shape)}")
        try:
            interp.set_tensor(inp["index"], x)
            interp.invoke()
        except Exception as exc:
            raise EdgeError(f"LiteRT failed to run {path.name}: {_first_line(exc)}") from exc
        return check_finite(interp.get_tensor(out["index"]).copy(), path.name)

    run.expected_inputs = [(tuple(int(d) for d in inp["shape"]), np.dtype(inp["dtype"]))]  # type: ignore[attr-defined]
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


if __name__ == "__main__" and sys.argv[1:] == ["--probe-server"]:
    _probe_server()
