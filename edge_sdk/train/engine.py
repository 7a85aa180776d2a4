"""The training loop: one function, `train(TrainJob)`, used by `edge-sdk train` and by tests.

Steps are the unit of everything (schedule, resume, --max-steps): global step = epoch x steps_per_epoch + step in
epoch, the lr is a pure function of it, mixup/cutmix draws from a generator seeded by (seed, epoch, step, rank), and
the sampler can skip the steps already done, so stopping anywhere and resuming gives bit-identical weights.
"""
from __future__ import annotations

import csv
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edge_sdk.errors import UsageError

from . import dist, state
from .distill import TeacherAdapter, class_logits, load_teacher, total_loss
from .ema import ModelEma
from .evaluate import evaluate
from .optim import CosineSchedule, make_optimizer, set_lr
from .recipe import Recipe, recipe_dict

LOG_FIELDS = ["epoch", "step", "lr", "train_loss", "train_top1", "images_per_s", "val_loss", "val_top1", "val_top5",
              "skipped", "time_s"]


@dataclass
class TrainJob:
    """What to train, on what, where; `recipe` holds every hyper-parameter."""

    model: str
    data: Path
    out: Path
    recipe: Recipe
    val: Path | None = None
    resume: bool = False
    init: Path | None = None               # start from these weights (fine-tuning, QAT)
    pretrained: bool | str = False         # published weights (True, a file or hf-hub:...): new head, see finetune
    teacher: str | None = None             # zoo name or checkpoint path
    teacher_checkpoint: Path | None = None
    qat: bool = False
    max_steps: int = 0                     # stop (saving last.pt) after this many global steps; 0 = run all epochs
    model_overrides: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = True
    on_log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.pretrained:  # e.g. MobileViT's exact norms: stored in the checkpoint so `convert` rebuilds them
            from edge_sdk.models.pretrained import pretrained_overrides
            self.model_overrides = pretrained_overrides(self.model, self.model_overrides)


@dataclass
class TrainResult:
    out: Path
    last: Path
    best: Path | None
    epochs_done: int
    global_step: int
    metrics: dict[str, Any]
    skipped: int


# ---- setup helpers ---------------------------------------------------------------------------------------------

def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _datasets(job: TrainJob, deploy: dict, train_tf):  # noqa: ANN001, ANN202
    from edge_sdk.data.dataset import ImageFolderDataset
    from edge_sdk.data.folder import check_same_classes
    from edge_sdk.data.transforms import EvalTransform
    train_ds = ImageFolderDataset(job.data, train_tf, seed=job.recipe.seed)
    val_ds = ImageFolderDataset(job.val, EvalTransform(deploy)) if job.val else None
    if val_ds is not None:
        check_same_classes(train_ds.classes, val_ds.classes)
    return train_ds, val_ds


def _build_model(job: TrainJob, classes: list[str]) -> nn.Module:
    from edge_sdk.models import create_model
    overrides = dict(job.model_overrides)
    if job.recipe.input_size:
        overrides["input_size"] = job.recipe.input_size
    model = create_model(job.model, num_classes=len(classes), labels=classes, pretrained=job.pretrained, **overrides)
    if job.recipe.freeze_stem:
        freeze_stem(model)
    if job.init is not None:
        from edge_sdk.models.checkpoint import load_weights
        load_weights(model, job.init)
    return model


def freeze_stem(model: nn.Module) -> None:
    """Fine-tuning option: the stem's weights stop training and its BN layers keep their published statistics
    (`train()` is patched to leave them in eval mode). The first layers see generic edges and colours."""
    stem = getattr(model, "stem", None)
    if stem is None:
        from edge_sdk.errors import UsageError
        raise UsageError(f"freeze_stem: {type(model).__name__} has no `stem`")
    for p in stem.parameters():
        p.requires_grad_(False)
    stem.register_forward_pre_hook(_keep_eval)


def _keep_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook of a frozen stem: BN normalizes with (and keeps) its published running statistics."""
    if module.training:
        module.eval()


def _train_transform(recipe: Recipe, deploy):  # noqa: ANN001, ANN202
    from edge_sdk.data.transforms import TrainAug
    return TrainAug(input_size=deploy.input_size, mean=deploy.mean, std=deploy.std,
                    crop_scale_min=recipe.crop_scale_min, hflip=recipe.hflip, randaug_n=recipe.randaug_n,
                    randaug_m=recipe.randaug_m, randaug_mstd=recipe.randaug_mstd, reprob=recipe.reprob)


def _amp(recipe: Recipe, device: torch.device) -> torch.dtype | None:
    """AMP only on CUDA: CPU autocast is slow for convs and changes numerics; CPU trains in fp32."""
    if device.type != "cuda" or recipe.amp == "none":
        return None
    return torch.bfloat16 if recipe.amp == "bf16" else torch.float16


def enable_grad_checkpointing(model: nn.Module) -> None:
    """Recompute each stage's activations in backward (memory for compute) by wrapping the stages' forward."""
    from torch.utils.checkpoint import checkpoint
    for _, stage in model.stages()[1:]:
        orig = stage.forward
        stage.forward = lambda *a, _f=orig: checkpoint(_f, *a, use_reentrant=False)  # type: ignore[method-assign]


def _step_generator(seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    s = int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1)[0])
    return torch.Generator().manual_seed(s)


# ---- the loop --------------------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, job: TrainJob) -> None:
        self.job, self.r = job, job.recipe
        self.info = dist.setup()
        _seed_all(self.r.seed)  # same initial weights on every rank
        self.device = self.info.device
        self.out = Path(job.out)
        self._resume_ckpt = self._read_resume() if job.resume else None  # fail fast on another model's checkpoint
        self._setup_data_and_model()
        self._setup_optim()
        _seed_all(self.r.seed + self.info.rank)  # then per-rank streams (dropout, drop path)
        self.epoch, self.step_in_epoch, self.best_top1, self.skipped_total = 0, 0, -1.0, 0
        if self._resume_ckpt is not None:
            self._resume(self._resume_ckpt)

    def log(self, msg: str) -> None:
        if self.info.is_main:
            (self.job.on_log or print)(msg)

    def _setup_data_and_model(self) -> None:
        job = self.job
        from edge_sdk.data.folder import scan_imagefolder
        classes, _ = scan_imagefolder(job.data)
        self.model = _build_model(job, classes)
        self.deploy = self.model.deploy
        self.train_ds, self.val_ds = _datasets(job, self.deploy.to_dict(), _train_transform(self.r, self.deploy))
        self.classes = self.train_ds.classes
        self.world_batch = self.r.batch_size * self.info.world_size
        per_rank = len(self.train_ds) // self.info.world_size
        self.steps_per_epoch = per_rank // self.r.batch_size
        if self.steps_per_epoch == 0:
            raise UsageError(f"{len(self.train_ds)} training images are fewer than one global batch "
                             f"({self.r.batch_size} x {self.info.world_size} processes); lower --batch-size")
        self.teacher = self._setup_teacher()
        self.model.to(self.device)
        if self.r.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.r.grad_checkpointing:
            enable_grad_checkpointing(self.model)
        from .optim import attention_param_names
        self.attn_names = attention_param_names(self.model)
        if job.qat:
            from .qat import prepare_qat
            self.model = prepare_qat(self.model, self.device)
        self.net: nn.Module = self.model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)  # broadcasts rank 0's weights
        # EMA is off under QAT: averaging fake-quant observers' ranges has no meaning
        self.ema = ModelEma(self.model, self.r.ema_decay) if self.r.ema and not job.qat else None
        if self.r.compile:
            self.net = torch.compile(self.net)

    def _setup_teacher(self) -> TeacherAdapter | None:
        if self.r.distill != "none" and not self.job.teacher:
            raise UsageError(f"recipe sets distill={self.r.distill} but no --teacher was given "
                             "(pass --teacher MODEL|CHECKPOINT or --set distill=none)")
        if not self.job.teacher:
            return None
        if self.r.distill == "none":
            raise UsageError("--teacher given but distill=none; add --set distill=hard (or soft)")
        t = load_teacher(self.job.teacher, self.job.teacher_checkpoint, len(self.classes))
        if not Path(self.job.teacher).is_file() and self.job.teacher_checkpoint is None:
            self.log(f"warning: teacher {self.job.teacher} has random weights (no --teacher-checkpoint)")
        if getattr(self.model, "has_dist_head", False):
            self.model.set_distilled_training(True)
        return TeacherAdapter(t, self.deploy, t.deploy).to(self.device)

    def _setup_optim(self) -> None:
        r = self.r
        self.lr_scale = self.world_batch / r.lr_base_batch
        warmup = r.warmup_steps if r.warmup_steps > 0 else int(round(r.warmup_epochs * self.steps_per_epoch))
        total = r.epochs * self.steps_per_epoch
        self.schedule = CosineSchedule(r.lr * self.lr_scale, r.min_lr * self.lr_scale, r.warmup_lr,
                                       min(warmup, total), total)
        self.optimizer = make_optimizer(self.model, self.schedule(0), r.weight_decay, r.betas,
                                        r.conv_lr_scale, r.attn_lr_scale, self.attn_names, r.backbone_lr_scale)
        self.amp_dtype = _amp(r, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        from edge_sdk.data.mix import Mixer
        self.mixer = Mixer(len(self.classes), r.mixup, r.cutmix, r.mix_prob, r.mix_switch_prob, r.label_smoothing)

    # ---- checkpoints ----
    def _meta(self) -> dict[str, Any]:
        overrides = {**self.job.model_overrides, "labels": list(self.classes)}
        if self.r.input_size:
            overrides["input_size"] = self.r.input_size
        return {"name": self.job.model, "num_classes": len(self.classes), "overrides": overrides}

    def _gather_rng(self) -> list[dict[str, Any]]:
        mine = state.rng_state()
        if not self.info.enabled:
            return [mine]
        out: list[Any] = [None] * self.info.world_size
        torch.distributed.all_gather_object(out, mine)
        return out

    def _model_state(self) -> dict[str, torch.Tensor]:
        if self.job.qat:
            from .qat import eager_state_dict
            return eager_state_dict(self.model, self._fresh_model())
        return self.model.state_dict()

    def _fresh_model(self) -> nn.Module:
        return _build_model(TrainJob(self.job.model, self.job.data, self.out, self.r,
                                     model_overrides=self.job.model_overrides), self.classes)

    def _sync_buffers(self) -> None:
        """BatchNorm statistics drift apart per rank (each sees its own batches); rank 0's are the saved ones,
        so every rank takes them before a checkpoint and at the end: all replicas stay identical."""
        if not self.info.enabled:
            return
        for module in [self.model] + ([self.ema.module] if self.ema is not None else []):
            for b in module.buffers():
                if b is not None and b.numel():
                    torch.distributed.broadcast(b, src=0)

    def save(self, name: str, metrics: dict[str, Any]) -> Path:
        self._sync_buffers()
        rngs = self._gather_rng()  # collective: every rank takes part, only rank 0 writes
        if not self.info.is_main:
            return self.out / name
        extra: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "train": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "best_top1": self.best_top1,
                      "recipe": recipe_dict(self.r), "classes": list(self.classes),
                      "world_size": self.info.world_size, "qat": self.job.qat, "metrics": metrics},
            "rng": rngs}
        if self.ema is not None:
            extra["ema"] = self.ema.state_dict()
            extra["ema_updates"] = self.ema.updates
        ckpt = state.build_checkpoint(self._meta(), self._model_state(), **extra)
        if self.job.qat:
            ckpt["qat_state_dict"] = self.model.state_dict()
        return state.save(ckpt, self.out / name)

    def _read_resume(self) -> dict[str, Any]:
        path = self.out / "last.pt"
        if not path.is_file():
            raise UsageError(f"--resume: no checkpoint at {path}")
        return state.load_for_resume(path, self.job.model)

    def _resume(self, ckpt: dict[str, Any]) -> None:
        path = self.out / "last.pt"
        tr = ckpt["train"]
        if tr["classes"] != list(self.classes):
            raise UsageError(f"--resume: {path} was trained on other classes than {self.job.data}")
        if bool(tr.get("qat")) != self.job.qat:
            raise UsageError(f"--resume: {path} was {'' if tr.get('qat') else 'not '}a --qat run")
        self.model.load_state_dict(ckpt["qat_state_dict"] if self.job.qat else ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and isinstance(ckpt.get("ema"), dict):
            self.ema.load_state_dict(ckpt["ema"], ckpt.get("ema_updates", 0))
        self.epoch, self.step_in_epoch, self.best_top1 = tr["epoch"], tr["step_in_epoch"], tr["best_top1"]
        rngs = ckpt["rng"]
        state.set_rng_state(rngs[self.info.rank] if self.info.rank < len(rngs) else rngs[0])
        self.log(f"resumed from {path} at epoch {self.epoch} step {self.step_in_epoch}")

    # ---- one epoch ----
    def _loader(self):  # noqa: ANN202
        from edge_sdk.data.dataset import make_train_loader
        loader, sampler = make_train_loader(self.train_ds, self.r.batch_size, self.r.workers, self.r.seed,
                                            self.info.world_size, self.info.rank)
        sampler.set_epoch(self.epoch)
        sampler.set_start(self.step_in_epoch * self.r.batch_size)
        self.train_ds.set_epoch(self.epoch)
        loader.generator = torch.Generator().manual_seed(self.r.seed * 1000 + self.epoch)  # not the global RNG
        return loader

    def _train_step(self, batch, stats: dict[str, float]) -> None:  # noqa: ANN001
        x, y = batch.x.to(self.device, non_blocking=True), batch.y.to(self.device, non_blocking=True)
        gstep = self.epoch * self.steps_per_epoch + self.step_in_epoch
        set_lr(self.optimizer, self.schedule(gstep))
        x, target = self.mixer(x, y, _step_generator(self.r.seed, self.epoch, self.step_in_epoch, self.info.rank))
        if self.r.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with ctx:
            out = self.net(x)
            t_logits = self.teacher(x) if self.teacher is not None else None
            loss = total_loss(out, target, t_logits, self.r.distill, self.r.distill_alpha, self.r.distill_tau)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.r.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.r.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        stats["loss"] += loss.item() * y.numel()
        stats["correct"] += (class_logits(out).argmax(1) == y).sum().item()
        stats["n"] += y.numel()

    def _run_epoch(self) -> tuple[dict[str, float], bool]:
        """Train from the current (epoch, step); returns stats and whether --max-steps stopped it."""
        stats = {"loss": 0.0, "correct": 0.0, "n": 0.0, "skipped": 0.0}
        t0 = time.perf_counter()
        self.net.train()
        if self.job.qat:
            from .qat import set_train
            set_train(self.model, True)
        with _progress(self.info.is_main and self.job.show_progress, self.epoch, self.r.epochs,
                       self.steps_per_epoch, self.step_in_epoch) as advance:
            for batch in self._loader():
                stats["skipped"] += len(batch.skipped)
                if batch.y.numel() > 0:
                    self._train_step(batch, stats)
                self.step_in_epoch += 1
                advance(stats)
                self._log_step(stats)
                gstep = self.epoch * self.steps_per_epoch + self.step_in_epoch
                if self.job.max_steps and gstep >= self.job.max_steps and self.step_in_epoch < self.steps_per_epoch:
                    return self._finish_stats(stats, t0), True
                if self.r.save_every_steps and gstep % self.r.save_every_steps == 0:
                    self.save("last.pt", {})
        return self._finish_stats(stats, t0), False

    def _log_step(self, stats: dict[str, float]) -> None:
        """Plain step lines when there is no progress bar (cluster logs, --no-progress)."""
        every = self.r.log_every_steps
        if self.job.show_progress or not every or self.step_in_epoch % every or not stats["n"]:
            return
        gstep = self.epoch * self.steps_per_epoch + self.step_in_epoch
        self.log(f"  epoch {self.epoch + 1} step {self.step_in_epoch}/{self.steps_per_epoch}  "
                 f"loss {stats['loss'] / stats['n']:.4f}  lr {self.schedule(gstep - 1):.3g}")

    def _finish_stats(self, stats: dict[str, float], t0: float) -> dict[str, float]:
        loss, correct, n, skipped = dist.all_reduce_sum([stats[k] for k in ("loss", "correct", "n", "skipped")],
                                                        self.info)
        self.skipped_total += int(skipped)
        return {"train_loss": loss / max(n, 1), "train_top1": 100 * correct / max(n, 1),
                "images_per_s": n / max(time.perf_counter() - t0, 1e-9), "skipped": int(skipped)}

    def _validate(self) -> dict[str, Any]:
        from edge_sdk.data.dataset import make_eval_loader
        if self.val_ds is None:
            return {}
        self._sync_buffers()  # every rank evaluates rank 0's BatchNorm statistics
        loader = make_eval_loader(self.val_ds, self.r.batch_size, self.r.workers, self.info.world_size,
                                  self.info.rank)
        model = self.ema.module if self.ema is not None else self.model
        if self.job.qat:
            from .qat import set_train
            set_train(self.model, False)
        m = evaluate(model, loader, self.device, self.info, self.amp_dtype, self.r.channels_last)
        self.skipped_total += m["skipped"]
        return {"val_loss": m["loss"], "val_top1": m["top1"], "val_top5": m["top5"], "val_skipped": m["skipped"]}

    def run(self) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        self._announce()
        metrics: dict[str, Any] = {}
        best: Path | None = self.out / "best.pt" if (self.out / "best.pt").is_file() else None
        t_start = time.perf_counter()
        while self.epoch < self.r.epochs:
            stats, stopped = self._run_epoch()
            if stopped:
                self.save("last.pt", stats)
                self.log(f"stopped at --max-steps {self.job.max_steps} (epoch {self.epoch}, step "
                         f"{self.step_in_epoch}); continue with --resume")
                break
            done_epoch = self.epoch
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            val = self._validate() if (self.epoch % self.r.eval_every == 0 or self.epoch == self.r.epochs) else {}
            metrics = {"epoch": done_epoch + 1, "step": self.epoch * self.steps_per_epoch,
                       "lr": self.schedule(self.epoch * self.steps_per_epoch - 1), **stats, **val,
                       "time_s": time.perf_counter() - t_start}
            metrics["skipped"] = stats["skipped"] + val.get("val_skipped", 0)
            self._report(metrics)
            self.save("last.pt", metrics)
            score = val.get("val_top1", stats["train_top1"])
            if score > self.best_top1:
                self.best_top1 = score
                best = self.save("best.pt", metrics)
            if self.job.max_steps and self.epoch * self.steps_per_epoch >= self.job.max_steps:
                break
        dist.barrier(self.info)
        if self.skipped_total:
            self.log(f"warning: skipped {self.skipped_total} corrupt image(s)")
        return TrainResult(self.out, self.out / "last.pt", best, self.epoch,
                           self.epoch * self.steps_per_epoch + self.step_in_epoch, metrics, self.skipped_total)

    def _announce(self) -> None:
        groups = {g["kind"]: 0 for g in self.optimizer.param_groups}
        for g in self.optimizer.param_groups:
            groups[g["kind"]] += sum(p.numel() for p in g["params"])
        self.log(f"training {self.job.model} on {len(self.train_ds)} images / {len(self.classes)} classes; "
                 f"{self.info.world_size} process(es) x batch {self.r.batch_size} = {self.world_batch}; "
                 f"peak lr {self.schedule.peak:.3g} (x{self.lr_scale:.3g} of recipe lr); "
                 f"{self.steps_per_epoch} steps/epoch; params conv {groups.get('conv', 0):,} "
                 f"attn {groups.get('attn', 0):,}"
                 f"{'; head ' + format(groups['head'], ',') if 'head' in groups else ''}; device {self.device}"
                 f"{'; amp ' + str(self.amp_dtype).split('.')[-1] if self.amp_dtype else ''}")

    def _report(self, m: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        val = (f"  val loss {m['val_loss']:.4f} top1 {m['val_top1']:.2f} top5 {m['val_top5']:.2f}"
               if "val_top1" in m else "")
        self.log(f"epoch {m['epoch']}/{self.r.epochs}  loss {m['train_loss']:.4f}  top1 {m['train_top1']:.2f}"
                 f"{val}  lr {m['lr']:.3g}  {m['images_per_s']:.0f} img/s")
        path = self.out / "log.csv"
        new = not path.is_file()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in m.items()})


class _progress:
    """A rich progress bar for one epoch on rank 0; a no-op elsewhere or when disabled."""

    def __init__(self, enabled: bool, epoch: int, epochs: int, total: int, start: int) -> None:
        self.enabled, self.desc, self.total, self.start = enabled, f"epoch {epoch + 1}/{epochs}", total, start

    def __enter__(self) -> Callable[[dict[str, float]], None]:
        if not self.enabled:
            return lambda stats: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        from edge_sdk.output import err_console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=err_console,
                            transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task(self.desc, total=self.total, completed=self.start, info="")

        def advance(stats: dict[str, float]) -> None:
            info = f"loss {stats['loss'] / max(stats['n'], 1):.3f}" if stats["n"] else ""
            self.bar.update(self.task, advance=1, info=info)
        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(None, None, None)


def train(job: TrainJob) -> TrainResult:
    """Train (or resume) a model as `job` says; returns where the checkpoints are and the last metrics."""
    trainer = Trainer(job)
    try:
        return trainer.run()
    finally:
        dist.cleanup(trainer.info)
