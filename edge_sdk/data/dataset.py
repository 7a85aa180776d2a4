"""ImageFolder dataset read with OpenCV, a resumable distributed sampler, and a loader that counts corrupt files.

Reproducibility: the augmentation of sample `i` in epoch `e` draws from `default_rng([seed, e, i])`, so it does
not depend on which DataLoader worker runs it, and a resumed run sees exactly the same pixels.
Corrupt files: `__getitem__` returns None instead of raising; the collate function drops them and reports their
paths, so training keeps going and the trainer can count and report what it skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .folder import Sample, scan_imagefolder

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def decode(path: Path) -> np.ndarray | None:
    """BGR uint8 image, or None when the file cannot be decoded (truncated, not an image, unreadable)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return img if img is not None and img.ndim == 3 and min(img.shape[:2]) > 0 else None


class ImageFolderDataset(Dataset):
    """`root/<class>/<image>`; items are (CHW float32 tensor, label, path) or None for a corrupt file."""

    def __init__(self, root: str | Path, transform: Transform, seed: int = 0) -> None:
        self.root = Path(root)
        self.classes, self.samples = scan_imagefolder(self.root)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str] | tuple[None, int, str]:
        path, label = self.samples[index]
        img = decode(path)
        if img is None:
            return None, label, str(path)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return torch.from_numpy(self.transform(img, rng)), label, str(path)


@dataclass
class Batch:
    x: torch.Tensor          # (B, 3, H, W) float32
    y: torch.Tensor          # (B,) int64
    skipped: list[str] = field(default_factory=list)  # corrupt files dropped from this batch


def collate(items: Sequence[tuple]) -> Batch:
    good = [(x, y) for x, y, _ in items if x is not None]
    skipped = [p for x, _, p in items if x is None]
    if not good:
        return Batch(torch.empty(0, 3, 1, 1), torch.empty(0, dtype=torch.int64), skipped)
    return Batch(torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good], dtype=torch.int64), skipped)


class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler (a per-epoch shuffle seeded by seed + epoch, one shard per rank) that can skip
    the first `start` samples of its shard: how a run resumed mid-epoch continues exactly where it stopped."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int,
                 drop_last: bool) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def make_train_loader(dataset: ImageFolderDataset, batch_size: int, workers: int, seed: int,
                      world_size: int = 1, rank: int = 0) -> tuple[DataLoader, ResumableSampler]:
    """This rank's shuffled shard; the last partial batch is dropped so every step has the global batch size."""
    sampler = ResumableSampler(dataset, world_size, rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                        drop_last=True, pin_memory=torch.cuda.is_available())
    return loader, sampler


def make_eval_loader(dataset: ImageFolderDataset, batch_size: int, workers: int,
                     world_size: int = 1, rank: int = 0) -> DataLoader:
    """Every sample exactly once across ranks (strided shards, no padding), so summed metrics are exact."""
    indices = list(range(rank, len(dataset), world_size))
    return DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=workers, collate_fn=collate,
                      pin_memory=torch.cuda.is_available())
