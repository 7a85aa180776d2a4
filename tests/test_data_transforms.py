"""OpenCV/numpy augmentations, Mixup/CutMix, the ImageFolder dataset and its corrupt-file handling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_sdk.data.dataset import ImageFolderDataset, collate, make_eval_loader, make_train_loader
from edge_sdk.data.mix import Mixer
from edge_sdk.data.randaugment import OPS, rand_augment
from edge_sdk.data.synth import make_images, write_imagefolder
from edge_sdk.data.transforms import EvalTransform, TrainAug, random_erasing, random_resized_crop
from edge_sdk.preprocess import preprocess

DEPLOY = {"input_size": 32, "resize": 36, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def test_every_randaugment_op_keeps_shape_and_dtype():
    img = np.ascontiguousarray(make_images(1, size=48, classes=4)[0][0][..., ::-1])
    rng = np.random.default_rng(0)
    changed = 0
    for name, op in OPS.items():
        out = op(img, 9.0, rng)
        assert out.shape == img.shape and out.dtype == np.uint8, name
        changed += not np.array_equal(out, img)
    assert changed >= len(OPS) - 2  # identity (and at most one no-op at this magnitude)
    assert rand_augment(img, 2, 9, 0.5, np.random.default_rng(1)).shape == img.shape


def test_train_aug_is_deterministic_by_rng_and_eval_matches_preprocess():
    img = make_images(1, size=64, classes=4)[0][0]
    aug = TrainAug(32, DEPLOY["mean"], DEPLOY["std"], crop_scale_min=0.3, reprob=1.0)
    a = aug(img, np.random.default_rng([0, 1, 2]))
    b = aug(img, np.random.default_rng([0, 1, 2]))
    c = aug(img, np.random.default_rng([0, 1, 3]))
    assert a.shape == (3, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(EvalTransform(DEPLOY)(img), preprocess(img, DEPLOY))
    crop = random_resized_crop(img, 20, (0.08, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0))
    assert crop.shape == (20, 20, 3)
    x = np.zeros((3, 32, 32), np.float32)
    assert (random_erasing(x.copy(), 1.0, np.random.default_rng(0)) != 0).any()


def test_mixup_cutmix_targets():
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    gen = torch.Generator().manual_seed(0)
    for mixer in (Mixer(4, mixup_alpha=0.8, cutmix_alpha=0.0), Mixer(4, mixup_alpha=0.0, cutmix_alpha=1.0)):
        xm, t = mixer(x, y, gen)
        assert xm.shape == x.shape and t.shape == (8, 4)
        assert torch.allclose(t.sum(1), torch.ones(8))
        assert not torch.equal(xm, x)
    xm, t = Mixer(4, prob=0.0, smoothing=0.0)(x, y, gen)
    assert torch.equal(xm, x) and torch.equal(t.argmax(1), y) and t.max() == 1.0


def test_dataset_loader_and_corrupt_files(tmp_path):
    root = write_imagefolder(tmp_path / "ds", classes=4, per_class=5, size=32)
    bad = root / "circle_dots" / "zz_bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    ds = ImageFolderDataset(root, TrainAug(32, DEPLOY["mean"], DEPLOY["std"]))
    assert len(ds) == 21 and ds[len(ds) - 1][0] is not None
    idx = [i for i, (p, _) in enumerate(ds.samples) if p == bad][0]
    assert ds[idx][0] is None
    batch = collate([ds[0], ds[idx]])
    assert batch.x.shape == (1, 3, 32, 32) and batch.skipped == [str(bad)]
    loader, sampler = make_train_loader(ds, 4, workers=0, seed=0, world_size=2, rank=1)
    assert len(loader) == 2  # 21 images -> 10 per rank -> 2 full batches of 4
    sampler.set_start(4)
    assert len(list(loader)) == 1  # resume skips the first batch
    ev = make_eval_loader(ImageFolderDataset(root, EvalTransform(DEPLOY)), 8, 0, world_size=2, rank=0)
    assert sum(len(b.y) + len(b.skipped) for b in ev) == 11  # ranks 0 and 1 split 21 samples 11/10, no padding
