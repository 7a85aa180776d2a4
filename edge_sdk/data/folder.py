"""ImageFolder layout: `root/<class_name>/<image files>`, classes sorted by name (torchvision's convention).

Scanning only lists files by suffix; decoding happens when an image is read, where corrupt files are skipped and
counted (see `edge_sdk.data.dataset`).
"""
from __future__ import annotations

from pathlib import Path

from edge_sdk.errors import UsageError
from edge_sdk.preprocess import IMAGE_SUFFIXES

Sample = tuple[Path, int]


def scan_imagefolder(root: str | Path) -> tuple[list[str], list[Sample]]:
    """Return (class names sorted, samples [(path, class_idx)] sorted by class then file name).

    UsageError when the folder is missing, has no class subfolders, or has no images at all. Empty class
    folders are an error too: a class the model can never see silently skews accuracy.
    """
    root = Path(root)
    if not root.exists():
        raise UsageError(f"data folder not found: {root}")
    if not root.is_dir():
        raise UsageError(f"data path is not a folder: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"data folder {root} has no class subfolders (expected {root}/<class>/<image>)")
    samples: list[Sample] = []
    empty: list[str] = []
    for idx, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            empty.append(name)
        samples.extend((p, idx) for p in files)
    if not samples:
        raise UsageError(f"data folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if empty:
        raise UsageError(f"class folder(s) without images in {root}: {', '.join(empty[:5])}"
                         f"{' ...' if len(empty) > 5 else ''}")
    return classes, samples


def check_same_classes(train: list[str], val: list[str]) -> None:
    """Train and val must name the same classes in the same order, or label indices would disagree."""
    if train == val:
        return
    only_train = sorted(set(train) - set(val))
    only_val = sorted(set(val) - set(train))
    detail = "; ".join(f"{label}: {', '.join(names[:5])}" for label, names in
                       (("only in train", only_train), ("only in val", only_val)) if names)
    raise UsageError(f"train and val folders have different classes ({detail or 'different order'})")
