"""`edge-sdk data synth OUT`: write the procedural shape x texture dataset as an ImageFolder."""
from __future__ import annotations

from pathlib import Path

import click

from edge_sdk.output import print_json, progress


@click.group("data")
def data_group() -> None:
    """Datasets: generate procedural training data.

    \b
    Example:
      edge-sdk data synth data/synth-train --classes 4 --per-class 200 --seed 0
    """


@data_group.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--classes", default=10, show_default=True, type=click.IntRange(2),
              help="Number of classes (shape x texture pairs, at most 30).")
@click.option("--per-class", default=100, show_default=True, type=click.IntRange(1), help="Images per class.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same pixels.")
@click.option("--size", default=64, show_default=True, type=click.IntRange(16, 1024), help="Image side in pixels.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def synth_cmd(out: Path, classes: int, per_class: int, seed: int, size: int, as_json: bool) -> None:
    """Write a deterministic ImageFolder whose classes need both shape AND texture to tell apart.

    Class names look like `circle_stripes`, `square_dots`. Use a different --seed for the validation split.
    OUT must not exist or be empty; it appears only when complete.

    \b
    Example:
      edge-sdk data synth data/train --classes 4 --per-class 200 --seed 0
      edge-sdk data synth data/val   --classes 4 --per-class 50  --seed 1
    """
    from edge_sdk.data.synth import class_names, write_imagefolder
    names = class_names(classes)
    with progress(f"writing {classes * per_class} images to {out}"):
        write_imagefolder(out, classes=classes, per_class=per_class, seed=seed, size=size)
    summary = {"out": str(out), "classes": names, "per_class": per_class, "images": classes * per_class,
               "seed": seed, "size": size}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"wrote {summary['images']} images ({classes} classes x {per_class}, {size}x{size}) to {out}")


commands = [data_group]
