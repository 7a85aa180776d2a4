"""Knowledge distillation as DeiT (Touvron et al. 2021) and LeViT train: a frozen teacher, soft or hard targets.

- soft: KL(student/tau || teacher/tau) * tau^2 (Hinton et al. 2015)
- hard: cross-entropy to the teacher's argmax (DeiT's "hard distillation", what LeViT uses)
Models with a distillation head (LeViT: `has_dist_head`) train it on the teacher while the class head learns the
labels; at inference the two heads are averaged. Other models get one head trained on the mixed loss
`(1 - alpha) * label_loss + alpha * distill_loss`.
The teacher may expect another input size or normalization; `TeacherAdapter` re-normalizes and resizes the
student's batch for it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_sdk.errors import UsageError


class TeacherAdapter(nn.Module):
    """Frozen teacher fed the student's batch converted to the teacher's mean/std and input size."""

    def __init__(self, teacher: nn.Module, student_deploy, teacher_deploy) -> None:  # noqa: ANN001 (DeployConfig)
        super().__init__()
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        as_t = lambda v: torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1)  # noqa: E731
        self.register_buffer("s_mean", as_t(student_deploy.mean))
        self.register_buffer("s_std", as_t(student_deploy.std))
        self.register_buffer("t_mean", as_t(teacher_deploy.mean))
        self.register_buffer("t_std", as_t(teacher_deploy.std))
        self.size = teacher_deploy.input_size

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) student-normalized -> (B, C) logits
        x = ((x * self.s_std + self.s_mean) - self.t_mean) / self.t_std
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        out = self.teacher.eval()(x)
        return out[0] if isinstance(out, tuple) else out


def load_teacher(spec: str, checkpoint: str | None, num_classes: int) -> nn.Module:
    """`spec` is an edge-sdk checkpoint path or a zoo name (weights from `checkpoint`, else random: a warning)."""
    from edge_sdk.models import create_model, list_models
    from edge_sdk.models import model_from_checkpoint
    if Path(spec).is_file():
        teacher = model_from_checkpoint(spec)
    elif spec in list_models():
        teacher = create_model(spec, num_classes=num_classes, checkpoint=checkpoint)
    else:
        raise UsageError(f"--teacher {spec!r} is neither a checkpoint file nor a zoo model name")
    if teacher.num_classes != num_classes:
        raise UsageError(f"teacher has {teacher.num_classes} classes, the data has {num_classes}")
    return teacher


def soft_target_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft (mixed, smoothed) targets (B, C)."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, tau: float) -> torch.Tensor:
    if kind == "hard":
        return F.cross_entropy(student.float(), teacher.argmax(dim=-1))
    s = F.log_softmax(student.float() / tau, dim=-1)
    t = F.log_softmax(teacher.float() / tau, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * tau * tau


def total_loss(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target: torch.Tensor,
               teacher_logits: torch.Tensor | None, kind: str, alpha: float, tau: float) -> torch.Tensor:
    """Label loss, plus the distillation loss on the distillation head (or the only head) when a teacher is set."""
    cls, dist = out if isinstance(out, tuple) else (out, out)
    base = soft_target_ce(cls, target)
    if teacher_logits is None or kind == "none":
        return base if dist is cls else (base + soft_target_ce(dist, target)) / 2
    return (1 - alpha) * base + alpha * distill_loss(dist, teacher_logits, kind, tau)


def class_logits(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Logits for train accuracy: the average of both heads during distilled training, as at inference."""
    return (out[0] + out[1]) / 2 if isinstance(out, tuple) else out
