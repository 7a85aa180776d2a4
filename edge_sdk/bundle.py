"""Bundles: a directory with the model file, `manifest.json` and `labels.txt` — the only thing downstream reads.

The manifest schema (version 1), all keys required unless marked optional:

    schema_version: 1
    created: ISO-8601 UTC time
    model: {name, family, num_classes, config: {...}, params, macs, checkpoint_sha256 (optional, null)}
    target: executorch | coreml | tflite          backend: xnnpack | coreml | litert | ...
    precision: fp32 | fp16 | int8 | mixed | dynamic_int8 | ...   (target-specific names, see converters)
    file: relative path of the model file inside the bundle     sha256: hex digest of that file
    input: {name, shape: [N, C, H, W] or [N, H, W, C], layout: NCHW|NHWC, dtype: float32|uint8|int8,
            color: RGB, scale: 1/255 (pixel -> [0,1]), resize: shorter side, crop: H, mean: [3], std: [3],
            normalization_in_model: bool, quantization: null | {scale, zero_point}}
    output: {name, shape, dtype, kind: logits|probabilities, quantization: null | {scale, zero_point}}
    labels: "labels.txt" (relative path) or null
    toolchain: {package: version}
    report: target-specific delegation / compatibility report (dict)
    parity: {status: passed|failed|not_run, reason (when not_run), metrics...}

Writing is atomic: everything goes to a hidden temp folder beside the destination, which replaces the destination
in one rename. An existing bundle is only replaced with `force=True`, and is never left half-written.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge_sdk.errors import EdgeError, UsageError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LABELS = "labels.txt"
REQUIRED_KEYS = ("schema_version", "model", "target", "backend", "precision", "file", "sha256", "input", "output",
                 "labels", "toolchain", "report", "parity")
REQUIRED_INPUT_KEYS = ("shape", "layout", "dtype", "color", "resize", "crop", "mean", "std", "normalization_in_model")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    p = Path(path)
    if p.is_dir():  # .mlpackage is a directory: hash its files in a stable order
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(sha256_file(f).encode())
        return h.hexdigest()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def check_writable(dest: Path, force: bool) -> None:
    """Refuse an existing bundle without `force`, a non-bundle folder, and an unwritable parent, before any work."""
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file, not a bundle directory; refusing to replace it (remove it or choose "
                         "another output)")
    if dest.exists() and not force:
        raise UsageError(f"{dest} already exists; pass --force to replace it")
    if dest.exists() and not (dest / MANIFEST).is_file() and any(dest.iterdir()):
        raise UsageError(f"{dest} exists and is not a bundle; refusing to replace it")
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeError(f"cannot create output directory {parent}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgeError(f"output directory {parent} is not writable")


def write_bundle(dest: str | Path, fill: Callable[[Path], dict[str, Any]], force: bool = False) -> Path:
    """Create a bundle atomically.

    `fill(tmpdir)` writes the model file (and anything else) into `tmpdir` and returns the manifest dict; this
    function adds schema version, creation time and sha256, writes manifest.json and labels.txt, then renames the
    temp folder onto `dest`. Any exception leaves no trace and an existing `dest` untouched.
    """
    dest = Path(dest).absolute()
    check_writable(dest, force)
    remove_stale_partials(dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pid{os.getpid()}.", suffix=".partial", dir=dest.parent))
    (tmp / PARTIAL_OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")
    try:
        manifest = fill(tmp)
        finish_manifest(tmp, manifest)
        (tmp / PARTIAL_OWNER).unlink(missing_ok=True)
        _swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


PARTIAL_OWNER = ".owner"  # inside a temp bundle folder: "<host> <pid>" of the conversion writing it
_PARTIAL_RE = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.partial$")


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete temp bundle folders (`.NAME.pid<PID>.*.partial`) left by killed conversions on this host.

    Why: a conversion killed with SIGKILL (or a power loss) cannot clean up after itself. A folder is removed only
    when its owner marker names this host and a process id that no longer runs, so a conversion still in progress
    (here or on another machine sharing the folder) is never touched. Returns the removed folders.
    """
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL_RE.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            host, pid = (entry / PARTIAL_OWNER).read_text(encoding="utf-8").split()
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if host == socket.gethostname() and pid == match.group(1) and not _process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def finish_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp schema/sha256, write labels.txt and manifest.json into `folder`."""
    manifest = {"schema_version": SCHEMA_VERSION, "created": now_iso(), **manifest}
    labels = manifest.pop("_labels", None)
    if labels:
        (folder / LABELS).write_text("\n".join(labels) + "\n", encoding="utf-8")
        manifest["labels"] = LABELS
    else:
        manifest.setdefault("labels", None)
    manifest["sha256"] = sha256_file(folder / manifest["file"])
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise EdgeError(f"internal: manifest lacks {missing}")
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return manifest


def _swap_in(tmp: Path, dest: Path) -> None:
    """Rename tmp onto dest; an existing dest is moved aside first and deleted only after the swap succeeded."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write a file via a temp file in the same folder, fsync and one rename: readers never see half a file, and
    a crash leaves the old file or the new one. The file gets the usual permissions (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_manifest(bundle: str | Path, **changes: Any) -> dict[str, Any]:
    """Rewrite manifest.json with some keys changed (e.g. parity), atomically."""
    bundle = Path(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    manifest.update(changes)
    atomic_write(bundle / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass
class Bundle:
    """A bundle read from disk and checked: schema, paths inside the folder, sha256 of the model file."""

    path: Path
    manifest: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.path / self.manifest["file"]

    @property
    def labels(self) -> list[str] | None:
        rel = self.manifest.get("labels")
        if not rel:
            return None
        return [line for line in inside(self.path, rel).read_text(encoding="utf-8").splitlines() if line.strip()]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def input_spec(self) -> dict[str, Any]:
        return self.manifest["input"]


def inside(root: Path, rel: str) -> Path:
    """Resolve `rel` under `root`, refusing absolute paths and paths that escape the bundle (`../`, symlinks)."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise EdgeError(f"manifest path {rel!r} must be relative to the bundle")
    full = (root / rel).resolve()
    if root.resolve() not in full.parents:
        raise EdgeError(f"manifest path {rel!r} escapes the bundle directory")
    return full


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle: schema checks, safe paths and (with `verify`) the sha256 of the model file."""
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"bundle not found: {root} (expected a directory with {MANIFEST})")
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeError(f"{root} has no {MANIFEST}; not a bundle") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeError(f"{root / MANIFEST} is not valid JSON: {exc}") from None
    _check_schema(root, manifest)
    model_file = inside(root, manifest["file"])
    if not model_file.exists():
        raise EdgeError(f"model file {manifest['file']} is missing from bundle {root}")
    if verify and sha256_file(model_file) != manifest["sha256"]:
        raise EdgeError(f"sha256 mismatch for {model_file.name}: the file was modified or truncated")
    if manifest.get("labels"):
        inside(root, manifest["labels"])
    return Bundle(root, manifest)


def _check_schema(root: Path, manifest: Any) -> None:
    if not isinstance(manifest, dict):
        raise EdgeError(f"{root / MANIFEST}: manifest must be a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise EdgeError(f"{root / MANIFEST}: unsupported schema_version {version!r} (this edge-sdk reads {SCHEMA_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise EdgeError(f"{root / MANIFEST}: missing keys {', '.join(missing)}")
    spec = manifest["input"]
    missing = [k for k in REQUIRED_INPUT_KEYS if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise EdgeError(f"{root / MANIFEST}: input spec lacks {', '.join(missing)}")
    if spec["layout"] not in ("NCHW", "NHWC"):
        raise EdgeError(f"{root / MANIFEST}: input layout must be NCHW or NHWC, got {spec['layout']!r}")
