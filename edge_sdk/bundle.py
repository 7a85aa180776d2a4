"""Bundles: a directory with the model file, `manifest.json` and `labels.txt` — the only thing downstream reads.

The manifest is `edge_sdk.manifest.Manifest` (typed, validated field by field; the JSON layout is described there).
`read_bundle` checks everything an app would trip over before any native code reads the model file: the manifest's
fields, paths inside the folder, the model file's sha256, and labels.txt (present, UTF-8, one line per class).

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
from typing import Any, Callable, Sequence

from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.manifest import SCHEMA_VERSION, Manifest

MANIFEST = "manifest.json"
LABELS = "labels.txt"
__all__ = ["SCHEMA_VERSION", "MANIFEST", "LABELS", "Bundle", "read_bundle", "write_bundle", "write_labels",
           "finish_manifest", "update_manifest", "atomic_write", "sha256_file", "inside", "check_writable"]


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


def write_bundle(dest: str | Path, fill: Callable[[Path], Manifest], force: bool = False) -> Path:
    """Create a bundle atomically.

    `fill(tmpdir)` writes the model file and labels.txt (`write_labels`) into `tmpdir` and returns the Manifest;
    this function stamps creation time and sha256, writes manifest.json, then renames the temp folder onto `dest`.
    Any exception leaves no trace and an existing `dest` untouched.
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


def write_labels(folder: Path, labels: Sequence[str]) -> str:
    """Write labels.txt (one class name per line) into a bundle folder; returns its name for `Manifest.labels`."""
    bad = [i for i, name in enumerate(labels) if not str(name).strip() or "\n" in str(name)]
    if bad:
        raise UsageError(f"label {bad[0]} is empty or spans lines; labels.txt holds one non-empty name per line")
    (folder / LABELS).write_text("\n".join(str(x) for x in labels) + "\n", encoding="utf-8")
    return LABELS


def finish_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Stamp creation time and the model file's sha256, check the result reads back, write manifest.json."""
    stamped = manifest.replace(schema_version=SCHEMA_VERSION, created=manifest.created or now_iso(),
                               sha256=sha256_file(folder / manifest.file))
    try:
        checked = Manifest.from_json(stamped.to_json(), source=f"internal: manifest written to {folder.name}")
        _read_labels(folder, checked)
    except EdgeError as exc:
        raise EdgeError(f"internal: {exc}") from exc
    atomic_write(folder / MANIFEST, json.dumps(checked.to_json(), indent=2) + "\n")
    return checked


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


def update_manifest(bundle: str | Path, **changes: Any) -> Manifest:
    """Rewrite manifest.json with some fields changed (e.g. `parity=...`), atomically; returns the new Manifest."""
    bundle = Path(bundle)
    manifest = _load_manifest(bundle).replace(**changes)
    atomic_write(bundle / MANIFEST, json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A bundle read from disk and checked: manifest fields, paths inside the folder, sha256, labels.txt."""

    path: Path
    manifest: Manifest
    labels: tuple[str, ...] | None = None

    @property
    def model_file(self) -> Path:
        return self.path / self.manifest.file

    @property
    def target(self) -> str:
        return self.manifest.target


def inside(root: Path, rel: str) -> Path:
    """Resolve `rel` under `root`, refusing absolute paths and paths that escape the bundle (`../`, symlinks)."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise EdgeError(f"manifest path {rel!r} must be relative to the bundle")
    full = (root / rel).resolve()
    if root.resolve() not in full.parents:
        raise EdgeError(f"manifest path {rel!r} escapes the bundle directory")
    return full


def read_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Open a bundle: manifest fields, safe paths, labels.txt and (with `verify`) the sha256 of the model file."""
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"bundle not found: {root} (expected a directory with {MANIFEST})")
    manifest = _load_manifest(root)
    model_file = inside(root, manifest.file)
    if not model_file.exists():
        raise EdgeError(f"model file {manifest.file} is missing from bundle {root}")
    if verify and sha256_file(model_file) != manifest.sha256:
        raise EdgeError(f"sha256 mismatch for {model_file.name}: the file was modified or truncated")
    return Bundle(root, manifest, _read_labels(root, manifest))


def _load_manifest(root: Path) -> Manifest:
    try:
        obj = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeError(f"{root} has no {MANIFEST}; not a bundle") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeError(f"{root / MANIFEST} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise EdgeError(f"cannot read {root / MANIFEST}: {exc.strerror}") from None
    return Manifest.from_json(obj, source=str(root / MANIFEST))


def _read_labels(root: Path, manifest: Manifest) -> tuple[str, ...] | None:
    """labels.txt: present, UTF-8, one non-empty line per output class (an app shows these names)."""
    if manifest.labels is None:
        return None
    file = inside(root, manifest.labels)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgeError(f"{root}: labels file {manifest.labels} is missing (set manifest labels to null or "
                        "re-convert the bundle)") from None
    except UnicodeDecodeError as exc:
        raise EdgeError(f"{root}: labels file {manifest.labels} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise EdgeError(f"{root}: cannot read labels file {manifest.labels}: {exc.strerror}") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    classes = manifest.output.num_classes
    if len(labels) != classes:
        raise EdgeError(f"{root}: labels file {manifest.labels} has {len(labels)} labels but the model outputs "
                        f"{classes} classes (manifest output.shape {list(manifest.output.shape)}; one label per line)")
    return labels
