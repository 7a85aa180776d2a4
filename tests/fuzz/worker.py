"""Child process of the fuzz runner: `python tests/fuzz/worker.py JOB.json`.

Runs each mutant of the job in-process, exactly as an app would (load_bundle + predict, read_image + predict,
model_from_checkpoint), and appends one JSON line before ("start") and one after (the outcome) each mutant, flushed,
so the parent knows which mutant a native crash killed.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

import fuzzlib  # noqa: E402

SCENE = np.clip(np.random.default_rng(1).normal(120, 50, (80, 90, 3)), 0, 255).astype(np.uint8)


class Log:
    def __init__(self, path: str) -> None:
        self.f = open(path, "a", encoding="utf-8")

    def write(self, rec: dict) -> None:
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        if "start" in rec and str(rec["start"]) == os.environ.get("FUZZ_ABORT_AT"):
            os.abort()  # test switch: a native crash at a known mutant, to check the harness counts it and goes on


def classify(fn) -> tuple[str, str]:  # noqa: ANN001
    from edge_sdk.errors import EdgeError
    try:
        fn()
    except EdgeError as exc:
        text = str(exc)
        return ("refused" if "\n" not in text.strip() else "traceback"), text[:300]
    except Exception as exc:  # noqa: BLE001 - this is what the fuzz counts
        return "traceback", f"{type(exc).__name__}: {str(exc)[:300]}"
    return "ok", ""


def run_bundles(job: dict, log: Log) -> None:
    from edge_sdk.runtime import load_bundle
    src = Path(job["source"])
    manifest = json.loads((src / "manifest.json").read_text())
    model_name = manifest["file"]
    data = (src / model_name).read_bytes()
    pte = model_name.endswith(".pte")
    regions = fuzzlib.pte_regions(data) if pte else fuzzlib.tflite_regions(data)
    header_len = 40 if pte else 8
    scratch = Path(job["scratch"]) / f"bundle-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(src, scratch)
    import hashlib
    for i in job["indices"]:
        log.write({"start": i})
        mutant, desc = fuzzlib.mutate_model(data, header_len, regions, job["seed"], i)
        (scratch / model_name).write_bytes(mutant)
        m = dict(manifest, sha256=hashlib.sha256(mutant).hexdigest())
        (scratch / "manifest.json").write_text(json.dumps(m))
        outcome, detail = classify(lambda: load_bundle(scratch).predict([SCENE], top_k=3))
        log.write({"index": i, "outcome": outcome, "detail": f"{desc}: {detail}" if detail else desc})


def run_images(job: dict, log: Log) -> None:
    from edge_sdk.preprocess import read_image
    from edge_sdk.runtime import load_bundle
    predictor = load_bundle(job["source"])
    bases = fuzzlib.image_bases()
    scratch = Path(job["scratch"]) / f"images-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    for i in job["indices"]:
        log.write({"start": i})
        data, suffix, desc = fuzzlib.mutate_image(bases, job["seed"], i)
        path = scratch / f"m{i}{suffix}"
        if data == b"DIRECTORY":
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(data)
        outcome, detail = classify(lambda: predictor.predict([read_image(path)], top_k=3))
        log.write({"index": i, "outcome": outcome, "detail": f"{desc}: {detail}" if detail else desc})
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


class Payload:
    """A pickle that, if ever unpickled with code execution allowed, creates the sentinel file."""

    def __init__(self, how: int, sentinel: str) -> None:
        self.how, self.sentinel = how, sentinel

    def __reduce__(self):  # noqa: ANN204
        import builtins
        import subprocess
        calls = ((os.system, (f"touch {self.sentinel}",)),
                 (builtins.exec, (f"open({self.sentinel!r}, 'w').close()",)),
                 (subprocess.call, (["touch", self.sentinel],)),
                 (builtins.open, (self.sentinel, "w")))
        return calls[self.how % len(calls)]


def checkpoint_mutant(base: bytes, base_obj: dict, job: dict, i: int, path: Path) -> str:
    import io
    import pickle

    import torch
    kind, rng = fuzzlib.describe_checkpoint(job["seed"], i)
    if kind == "truncate":
        cut = int(rng.integers(0, len(base)))
        path.write_bytes(base[:cut])
        return f"truncate to {cut}"
    if kind == "flip":
        buf = bytearray(base)
        where = sorted(int(x) for x in rng.integers(0, len(buf), int(rng.integers(1, 9))))
        for w in where:
            buf[w] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(buf))
        return f"flip @ {where}"
    if kind == "random":
        path.write_bytes(rng.integers(0, 256, int(rng.integers(1, 200000)), dtype=np.uint8).tobytes())
        return "random bytes"
    if kind == "pickle":
        payload = Payload(int(rng.integers(4)), job["sentinel"])
        how = int(rng.integers(4))
        obj = ({"format": "edge-sdk", "model": base_obj["model"], "state_dict": base_obj["state_dict"],
                "extra": payload} if how == 0 else payload)
        if how < 2:
            buf = io.BytesIO()
            torch.save(obj, buf)
            path.write_bytes(buf.getvalue())
        else:  # a raw (legacy, non-zip) pickle
            path.write_bytes(pickle.dumps(obj, protocol=int(rng.integers(2, 6))))
        return f"__reduce__ payload {payload.how} ({'zip' if how < 2 else 'raw pickle'})"
    if kind == "meta":
        change = fuzzlib.HOSTILE_META[int(rng.integers(len(fuzzlib.HOSTILE_META)))]
        torch.save(dict(base_obj, model={**base_obj["model"], **change}), path)
        return f"metadata {change}"
    state = dict(base_obj["state_dict"])
    key = sorted(state)[int(rng.integers(len(state)))]
    choice = int(rng.integers(4))
    if choice == 0:
        state[key] = state[key].flatten()[:1].clone()
    elif choice == 1:
        state[key] = 3
    elif choice == 2:
        state.pop(key)
    else:
        state[key] = torch.zeros(1, dtype=torch.int8)
    torch.save(dict(base_obj, state_dict=state), path)
    return f"state_dict {key} edit {choice}"


def run_checkpoints(job: dict, log: Log) -> None:
    import torch

    from edge_sdk.models import model_from_checkpoint
    base = Path(job["source"]).read_bytes()
    base_obj = torch.load(job["source"], weights_only=True)
    scratch = Path(job["scratch"]) / f"ckpt-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    for i in job["indices"]:
        log.write({"start": i})
        path = scratch / f"m{i}.pt"
        desc = checkpoint_mutant(base, base_obj, job, i, path)
        outcome, detail = classify(lambda: model_from_checkpoint(path))
        log.write({"index": i, "outcome": outcome, "detail": f"{desc}: {detail}" if detail else desc})
        path.unlink(missing_ok=True)


def apply_variant() -> None:
    """Measurement switches (benchmarks/results/fuzz.md): FUZZ_PYTHON_LOG_SINK=1 keeps the pip pybindings' log sink
    (the process-aborting one); FUZZ_VERIFICATION=Minimal loads programs without the flatbuffer verifier."""
    if os.environ.get("FUZZ_PYTHON_LOG_SINK"):
        from edge_sdk.runtime import engines
        engines._SAFE_SINK = False
    if os.environ.get("FUZZ_VERIFICATION") == "Minimal":
        from executorch.runtime import Runtime, Verification
        original = Runtime.load_program

        def minimal(self, data, **kw):  # noqa: ANN001, ANN003, ANN202
            kw["verification"] = Verification.Minimal
            return original(self, data, **kw)
        Runtime.load_program = minimal


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    apply_variant()
    log = Log(job["results"])
    {"bundle": run_bundles, "image": run_images, "checkpoint": run_checkpoints}[job["kind"]](job, log)


if __name__ == "__main__":
    main()
