"""`edge-sdk train MODEL --data DIR` and `edge-sdk eval CHECKPOINT --data DIR`."""
from __future__ import annotations

from pathlib import Path

import click

from edge_sdk.output import print_json, print_table

# Explicit flags that map onto recipe keys (everything else: --set KEY=VALUE).
FLAG_KEYS = ("epochs", "batch_size", "lr", "seed", "workers")


@click.command("train")
@click.argument("model")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Training ImageFolder (DIR/<class>/<img>).")
@click.option("--val", type=click.Path(path_type=Path), default=None, help="Validation ImageFolder (same classes).")
@click.option("--recipe", default=None, help="Recipe name (cpu-tiny, finetune, mobilevit, mobilevitv2, levit, hybrid) "
              "or YAML file; default cpu-tiny, finetune with --pretrained (the checkpoint's recipe with --resume).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any recipe value; repeatable.")
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Per process; global = this x processes.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="Peak lr at the recipe's lr_base_batch.")
@click.option("--seed", type=int, default=None)
@click.option("--workers", type=click.IntRange(0), default=None, help="DataLoader worker processes.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/train"), show_default=True,
              help="Folder for last.pt, best.pt and log.csv.")
@click.option("--resume", is_flag=True, help="Continue exactly from OUT/last.pt.")
@click.option("--init", type=click.Path(path_type=Path), default=None, help="Start from these weights (fine-tune, QAT).")
@click.option("--pretrained", is_flag=True, help="Fine-tune from MODEL's published ImageNet weights: the head is "
              "replaced for the folder's classes; default recipe finetune.")
@click.option("--weights", default=None, metavar="FILE|hf-hub:REPO",
              help="Published-layout weights to fine-tune from (implies --pretrained).")
@click.option("--teacher", default=None, help="Distillation teacher: checkpoint file or zoo model name.")
@click.option("--teacher-checkpoint", type=click.Path(path_type=Path), default=None,
              help="Weights for a --teacher given by zoo name.")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning (PT2E, XNNPACK int8 config); use with --init.")
@click.option("--max-steps", type=click.IntRange(0), default=0, help="Stop after this many steps (saving last.pt).")
@click.option("--no-progress", is_flag=True, help="No progress bar (per-epoch lines only).")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
def train_cmd(model: str, data: Path, val: Path | None, recipe: str | None, sets: tuple[str, ...], epochs: int | None,
              batch_size: int | None, lr: float | None, seed: int | None, workers: int | None, out: Path,
              resume: bool, init: Path | None, pretrained: bool, weights: str | None, teacher: str | None,
              teacher_checkpoint: Path | None, qat: bool, max_steps: int, no_progress: bool, as_json: bool) -> None:
    """Train a zoo MODEL on an ImageFolder, the way its paper does (recipe) or small on a CPU (cpu-tiny).

    Runs as one process, or one per GPU under torchrun (DDP; rank 0 logs and writes checkpoints).

    \b
    Example:
      edge-sdk data synth data/train --classes 4 --per-class 200
      edge-sdk data synth data/val --classes 4 --per-class 50 --seed 1
      edge-sdk train mobilevitv2_tiny --data data/train --val data/val --recipe cpu-tiny --epochs 5 --out runs/t
      edge-sdk train efficientnet_lite0 --pretrained --data data/train --val data/val --out runs/ft
      torchrun --nproc_per_node 8 -m edge_sdk.cli train mobilevitv2_100 --data imagenet/train \\
          --val imagenet/val --recipe mobilevitv2 --out runs/mvv2
    """
    from edge_sdk.train.engine import TrainJob, train
    from edge_sdk.train.recipe import load_recipe, parse_set
    overrides = {**parse_set(sets), **{k: v for k, v in zip(FLAG_KEYS, (epochs, batch_size, lr, seed, workers))
                                        if v is not None}}
    source: bool | str = weights or pretrained
    if source and init is not None:
        from edge_sdk.errors import UsageError
        raise UsageError("give either --pretrained/--weights (published weights) or --init (an edge-sdk checkpoint)")
    if source and recipe is None and not resume:
        recipe = "finetune"
    rec = load_recipe(_recipe_source(recipe, resume, out, model), overrides)
    job = TrainJob(model, data, out, rec, val=val, resume=resume, init=init, pretrained=source, teacher=teacher,
                   teacher_checkpoint=teacher_checkpoint, qat=qat, max_steps=max_steps,
                   show_progress=not no_progress and not as_json,
                   on_log=(lambda m: click.echo(m, err=True)) if as_json else None)
    res = train(job)
    summary = {"out": str(res.out), "last": str(res.last), "best": str(res.best) if res.best else None,
               "epochs_done": res.epochs_done, "global_step": res.global_step, "skipped_images": res.skipped,
               **res.metrics}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"checkpoints: {res.last}" + (f", {res.best}" if res.best else ""))


def _recipe_source(recipe: str | None, resume: bool, out: Path, model: str) -> str:
    """With --resume and no --recipe, continue with the recipe stored in the checkpoint (written as YAML)."""
    if recipe is not None or not resume:
        return recipe or "cpu-tiny"
    import yaml
    ckpt_path = out / "last.pt"
    if not ckpt_path.is_file():
        from edge_sdk.errors import UsageError
        raise UsageError(f"--resume: no checkpoint at {ckpt_path}")
    from edge_sdk.train.state import load_for_resume
    stored = load_for_resume(ckpt_path, model)["train"].get("recipe", {})
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(stored))
    return str(path)


@click.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="ImageFolder with the model's classes.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(checkpoint: Path, data: Path, batch_size: int, workers: int, as_json: bool) -> None:
    """Top-1 / top-5 accuracy and loss of a training checkpoint on an ImageFolder (deploy preprocessing).

    \b
    Example:
      edge-sdk eval runs/t/best.pt --data data/val --json
    """
    from edge_sdk.train.evaluate import evaluate_checkpoint
    m = evaluate_checkpoint(checkpoint, data, batch_size, workers)
    if as_json:
        print_json(m)
        return
    print_table(f"{m['model']} on {data}", ["metric", "value"],
                [("top-1", f"{m['top1']:.2f}%"), ("top-5", f"{m['top5']:.2f}%"), ("loss", f"{m['loss']:.4f}"),
                 ("images", m["images"]), ("skipped (corrupt)", m["skipped"])])


commands = [train_cmd, eval_cmd]
