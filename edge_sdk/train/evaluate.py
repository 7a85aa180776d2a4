"""Top-1 / top-5 accuracy and cross-entropy of a model on an ImageFolder, with deploy preprocessing."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import dist


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, info: dist.DistInfo | None = None,  # noqa: ANN001
             amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, Any]:
    """Exact metrics over all ranks' shards: sums are all-reduced, then divided once."""
    info = info or dist.DistInfo()
    model.eval()
    loss_sum = top1 = top5 = n = skipped = 0.0
    ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    for batch in loader:
        skipped += len(batch.skipped)
        if batch.y.numel() == 0:
            continue
        x, y = batch.x.to(device, non_blocking=True), batch.y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ctx:
            logits = model(x)
        logits = (logits[0] + logits[1]) / 2 if isinstance(logits, tuple) else logits.float()
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices == y.view(-1, 1)  # (B, k)
        top1 += hits[:, 0].sum().item()
        top5 += hits.any(dim=1).sum().item()
        n += y.numel()
    loss_sum, top1, top5, n, skipped = dist.all_reduce_sum([loss_sum, top1, top5, n, skipped], info)
    denom = max(n, 1)
    return {"loss": loss_sum / denom, "top1": 100 * top1 / denom, "top5": 100 * top5 / denom,
            "images": int(n), "skipped": int(skipped)}


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, batch_size: int = 64,
                        workers: int = 0) -> dict[str, Any]:
    """`edge-sdk eval`: rebuild the model a checkpoint describes, check its classes against DATA, evaluate."""
    from edge_sdk.data.dataset import ImageFolderDataset, make_eval_loader
    from edge_sdk.data.folder import check_same_classes
    from edge_sdk.data.transforms import EvalTransform
    from edge_sdk.errors import UsageError
    from edge_sdk.models import model_from_checkpoint
    model = model_from_checkpoint(checkpoint)
    ds = ImageFolderDataset(data, EvalTransform(model.deploy.to_dict()))
    labels = list(model.deploy.labels or [])
    if labels:
        check_same_classes(labels, ds.classes)
    elif len(ds.classes) != model.num_classes:
        raise UsageError(f"{data} has {len(ds.classes)} classes, the checkpoint's model has {model.num_classes}")
    metrics = evaluate(model, make_eval_loader(ds, batch_size, workers), torch.device("cpu"))
    return {"checkpoint": str(checkpoint), "model": model.name, "data": str(data), **metrics}
