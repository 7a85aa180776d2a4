"""Mutant generators and the child-process runner behind tests/fuzz (CI) and `make fuzz` (long runs).

Every mutant is a pure function of (seed, index), so a crash found in a run is reproduced by its index alone.
Mutants run in child processes (tests/fuzz/worker.py), many per child: a child that dies (signal, abort, exit
without a result) marks the mutant it was running as a native crash, and a fresh child continues after it.

Outcomes per mutant: ok (loaded and predicted), refused (one EdgeError line), traceback (any other exception),
crash (the child died), hang (no progress for `HANG_S`).
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER = HERE / "worker.py"
HANG_S = 60.0
OUTCOMES = ("ok", "refused", "traceback", "crash", "hang")


# ---- model-file mutants -----------------------------------------------------------------------------------------

def pte_regions(data: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges of a .pte worth aiming at: the program flatbuffer, the XNNPACK delegate header and flatbuffer."""
    regions = {"file": (0, len(data))}
    if data[8:12] == b"eh00":
        program_size = int.from_bytes(data[16:24], "little")
        regions["program"] = (0, min(program_size, len(data)))
    at = data.find(b"XH00")
    if at >= 4:
        start = at - 4
        # XNNHeader: magic at +4, u16 header length at +8, u32 flatbuffer offset/size at +10/+14 (from the blob start)
        header_len, fb_off, fb_size = struct.unpack_from("<HII", data, start + 8)
        regions["delegate_header"] = (start, start + max(header_len, 8))
        if start + fb_off + fb_size <= len(data):
            regions["delegate_flatbuffer"] = (start + fb_off, start + fb_off + fb_size)
    return regions


def tflite_regions(data: bytes) -> dict[str, tuple[int, int]]:
    """A .tflite is one flatbuffer; its tables sit at the start and the end, the weight buffers in between."""
    n = len(data)
    return {"file": (0, n), "head": (0, min(n, 8192)), "tail": (max(0, n - 8192), n)}


def _pick(regions: dict[str, tuple[int, int]], rng: np.random.Generator) -> tuple[str, int, int]:
    names = [k for k in regions if regions[k][1] > regions[k][0]]
    name = names[int(rng.integers(len(names)))] if rng.random() < 0.6 else "file"
    lo, hi = regions[name]
    return name, lo, hi


def mutate_model(data: bytes, header_len: int, regions: dict[str, tuple[int, int]], seed: int,
                 index: int) -> tuple[bytes, str]:
    """One mutant of a model file: truncation, byte flips (whole file and structured regions, delegate blobs
    included), a random chunk at a random offset, boundary integers at aligned offsets, or a header-valid random
    body. Returns (bytes, description)."""
    rng = np.random.default_rng([seed, index])
    buf = bytearray(data)
    kind = ("truncate", "flip", "overwrite", "int", "random_body")[index % 5]
    if kind == "truncate":
        cut = int(rng.integers(0, len(buf)))
        return bytes(buf[:cut]), f"truncate to {cut}"
    if kind == "random_body":
        body = rng.integers(0, 256, len(buf) - header_len, dtype=np.uint8).tobytes()
        return bytes(buf[:header_len]) + body, f"header ({header_len} B) + random body"
    name, lo, hi = _pick(regions, rng)
    if kind == "flip":
        k = int(rng.integers(1, 5))
        where = sorted(int(x) for x in rng.integers(lo, hi, k))
        for w in where:
            buf[w] = buf[w] ^ int(rng.integers(1, 256))
        return bytes(buf), f"flip {name} @ {where}"
    if kind == "overwrite":
        at = int(rng.integers(lo, hi))
        n = int(rng.integers(2, 65))
        chunk = rng.integers(0, 256, n, dtype=np.uint8).tobytes() if rng.random() < 0.7 else bytes([0xFF]) * n
        buf[at:at + n] = chunk[:max(0, len(buf) - at)]
        return bytes(buf), f"overwrite {name} @ {at} x{n}"
    at = (int(rng.integers(lo, max(lo + 1, hi - 4))) // 4) * 4
    value = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(buf), len(buf) + 4)[int(rng.integers(7))]
    buf[at:at + 4] = struct.pack("<I", value)
    return bytes(buf), f"int {name} @ {at} = {value:#x}"


# ---- image mutants ----------------------------------------------------------------------------------------------

def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header_bomb(width: int, height: int, depth: int = 8, color: int = 2) -> bytes:
    """A tiny PNG whose (CRC-valid) IHDR claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def image_bases() -> dict[str, bytes]:
    """Valid encodings of one scene: PNG (8/16-bit, grey, palette), JPEG (RGB, CMYK), BMP, WebP, TIFF."""
    import io

    import cv2
    from PIL import Image
    rng = np.random.default_rng(5)
    img = np.clip(rng.normal(120, 60, (72, 96, 3)), 0, 255).astype(np.uint8)
    out = {}
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tiff"):
        ok, enc = cv2.imencode(ext, img)
        assert ok
        out[ext] = enc.tobytes()
    ok, enc = cv2.imencode(".png", img.astype(np.uint16) * 257)
    out["16bit.png"] = enc.tobytes()
    for mode, ext in (("CMYK", ".jpg"), ("L", ".png"), ("P", ".png"), ("LA", ".png"), ("I;16", ".png")):
        b = io.BytesIO()
        Image.fromarray(img[..., ::-1]).convert(mode if mode != "I;16" else "I").convert(mode).save(b, ext[1:].replace("jpg", "jpeg"))
        out[f"{mode.replace(';', '')}{ext}"] = b.getvalue()
    return out


def mutate_image(bases: dict[str, bytes], seed: int, index: int) -> tuple[bytes, str, str]:
    """(bytes, suffix, description): header bombs, truncations, byte flips, zero-size and random files."""
    rng = np.random.default_rng([seed, index])
    names = sorted(bases)
    name = names[int(rng.integers(len(names)))]
    data = bytearray(bases[name])
    suffix = "." + name.rsplit(".", 1)[-1]
    kind = ("bomb", "truncate", "flip", "overwrite", "special")[index % 5]
    if kind == "bomb":
        dims = (0, 1, 2**31 - 1, 2**32 - 1, 100000, 20000, 65535, int(rng.integers(1, 2**20)))
        w, h = (dims[int(rng.integers(len(dims)))] for _ in range(2))
        depth, color = ((8, 2), (16, 2), (8, 6), (1, 0), (8, 3), (7, 9))[int(rng.integers(6))]
        return png_header_bomb(w, h, depth, color), ".png", f"png header {w}x{h} depth {depth} color {color}"
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        return bytes(data[:cut]), suffix, f"{name} truncated to {cut}"
    if kind == "flip":
        k = int(rng.integers(1, 9))
        where = sorted(int(x) for x in rng.integers(0, min(len(data), 400 if rng.random() < 0.5 else len(data)), k))
        for w in where:
            data[w] ^= int(rng.integers(1, 256))
        return bytes(data), suffix, f"{name} flip @ {where}"
    if kind == "overwrite":
        at = int(rng.integers(0, len(data)))
        data[at:at + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        return bytes(data), suffix, f"{name} overwrite @ {at}"
    special = int(rng.integers(4))
    if special == 0:
        return b"", suffix, "zero-size file"
    if special == 1:
        return rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes(), suffix, "random bytes"
    if special == 2:
        return bytes(data[:8]) + rng.integers(0, 256, len(data), dtype=np.uint8).tobytes(), suffix, "magic + random"
    return b"DIRECTORY", suffix, "a directory named like an image"


# ---- checkpoint mutants -----------------------------------------------------------------------------------------

HOSTILE_META = ({"num_classes": 10**15}, {"num_classes": -3}, {"num_classes": 0}, {"num_classes": "10"},
                {"num_classes": 2.5}, {"num_classes": True}, {"num_classes": None}, {"overrides": [1, 2]},
                {"overrides": "dims"}, {"overrides": {"dims": [10**6, 10**6]}}, {"overrides": {"depths": [10**9]}},
                {"overrides": {"nonsense": 1}}, {"overrides": {1: 2}}, {"overrides": {"dims": "abc"}},
                {"overrides": {"input_size": -5}}, {"overrides": {"labels": ["a"]}}, {"name": 7}, {"name": ""},
                {"name": "no_such_model"}, {"name": "../../etc/passwd"}, {"name": None})


def checkpoint_kinds() -> tuple[str, ...]:
    return ("truncate", "flip", "random", "pickle", "meta", "state")


def describe_checkpoint(seed: int, index: int) -> tuple[str, np.random.Generator]:
    return checkpoint_kinds()[index % len(checkpoint_kinds())], np.random.default_rng([seed, index])


def convert_tiny(target: str, out: Path) -> Path:
    """A real bundle of the tiny trained LeViT (tests/assets/tiny), made by the CLI exactly as a user would."""
    exe = Path(sys.executable).with_name("edge-sdk")
    tiny = ROOT / "tests" / "assets" / "tiny" / "levit_tiny.pt"
    proc = subprocess.run([str(exe), "convert", str(tiny), "--target", target, "-o", str(out)], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"edge-sdk convert --target {target} failed: {proc.stderr[-2000:]}")
    (bundle,) = [p for p in Path(out).iterdir() if p.is_dir() and p.name.startswith(f"levit_tiny-{target}")]
    return bundle


# ---- the runner -------------------------------------------------------------------------------------------------

@dataclass
class FuzzReport:
    kind: str
    total: int = 0
    counts: Counter = field(default_factory=Counter)
    bad: list[dict] = field(default_factory=list)  # tracebacks, crashes and hangs, with their index and detail
    seconds: float = 0.0
    children: int = 0
    stderr_tracebacks: int = 0

    def line(self) -> str:
        parts = ", ".join(f"{k} {self.counts.get(k, 0)}" for k in OUTCOMES)
        return f"{self.kind}: {self.total} mutants in {self.seconds:.0f} s ({self.children} child processes): {parts}"


def run_mutants(kind: str, source: str, seed: int, count: int, workdir: Path, per_child: int = 400,
                sentinel: Path | None = None, env: dict | None = None) -> FuzzReport:
    """Run mutants [0, count) of `kind` ("bundle", "image", "checkpoint") from `source` in child processes."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = FuzzReport(kind=f"{kind}:{Path(source).name}", total=count)
    start = time.time()
    todo = list(range(count))
    while todo:
        batch, todo = todo[:per_child], todo[per_child:]
        results = workdir / f"results-{report.children}.jsonl"
        job = workdir / f"job-{report.children}.json"
        results.unlink(missing_ok=True)
        job.write_text(json.dumps({"kind": kind, "source": str(source), "seed": seed, "indices": batch,
                                   "results": str(results), "scratch": str(workdir / "scratch"),
                                   "sentinel": str(sentinel) if sentinel else None}))
        rc, hung, err = _run_child(job, results, workdir / f"stderr-{report.children}.txt", env)
        report.children += 1
        report.stderr_tracebacks += err.count("Traceback (most recent call last)")
        done, started = _read_results(results)
        for i, outcome, detail in done:
            report.counts[outcome] += 1
            if outcome == "traceback":
                report.bad.append({"index": i, "outcome": outcome, "detail": detail})
        unfinished = [i for i in started if i not in {d[0] for d in done}]
        if unfinished:
            i = unfinished[0]
            outcome = "hang" if hung else "crash"
            report.counts[outcome] += 1
            report.bad.append({"index": i, "outcome": outcome, "detail": f"exit status {rc}; {err[-300:]}"})
            todo = batch[batch.index(i) + 1:] + todo
        elif rc != 0:  # died before starting anything: count the batch's first mutant as the crash
            report.counts["crash"] += 1
            report.bad.append({"index": batch[0], "outcome": "crash", "detail": f"exit status {rc}; {err[-300:]}"})
            todo = batch[1:] + todo
    report.seconds = time.time() - start
    return report


def _run_child(job: Path, results: Path, stderr_path: Path, env: dict | None) -> tuple[int, bool, str]:
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(WORKER), str(job)], stdout=subprocess.DEVNULL, stderr=err,
                                env=child_env, cwd=str(ROOT))
        last, size, hung = time.time(), -1, False
        while proc.poll() is None:
            time.sleep(0.2)
            now_size = results.stat().st_size if results.exists() else 0
            if now_size != size:
                size, last = now_size, time.time()
            elif time.time() - last > HANG_S:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                hung = True
    text = stderr_path.read_text(encoding="utf-8", errors="replace")
    return proc.returncode, hung, text


def _read_results(path: Path) -> tuple[list[tuple[int, str, str]], list[int]]:
    done, started = [], []
    if not path.exists():
        return done, started
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the crash
        if "start" in rec:
            started.append(rec["start"])
        else:
            done.append((rec["index"], rec["outcome"], rec.get("detail", "")))
    return done, started
