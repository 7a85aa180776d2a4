"""`edge-sdk predict BUNDLE IMAGE...`: top-k classes for images, through the bundle's own runtime."""
from __future__ import annotations

from pathlib import Path

import click

from edge_sdk.output import print_json, print_table


def _load_inputs(predictor, paths: list[Path]):  # noqa: ANN001, ANN202
    """Images are decoded and preprocessed from the manifest; `.npy` files are taken as ready tensors (N, 3, H, W)
    so a script can feed exactly what it preprocessed itself."""
    import numpy as np

    from edge_sdk.errors import EdgeError
    from edge_sdk.preprocess import read_image
    batches, names = [], []
    for p in paths:
        if p.suffix.lower() == ".npy":
            try:
                x = np.load(p, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise EdgeError(f"cannot read tensor file {p}: {exc}") from None
            x = x[None] if x.ndim == 3 else x
            batches.append(x)
            names += [f"{p}[{i}]" for i in range(len(x))] if x.ndim == 4 else [str(p)]
        else:
            batches.append(predictor.preprocess([read_image(p)]))
            names.append(str(p))
    return batches, names


@click.command("predict")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1), help="Classes to show per image.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for the runtime.")
@click.option("--compute-units", default="ALL", show_default=True,
              type=click.Choice(["ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"], case_sensitive=False),
              help="Core ML hardware (macOS only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def predict_cmd(bundle: Path, images: tuple[Path, ...], top_k: int, threads: int | None, compute_units: str,
                as_json: bool) -> None:
    """Classify IMAGES with a converted BUNDLE; prints the top-k labels and probabilities.

    Images are decoded with OpenCV and preprocessed from the bundle's manifest (resize, center crop, normalize),
    exactly as during conversion. A `.npy` file is used as an already-normalized (N, 3, H, W) float32 tensor.

    \b
    Example:
      edge-sdk predict bundles/levit_128s-executorch-xnnpack-fp32 cat.jpg dog.png --top-k 3
      edge-sdk predict bundles/levit_128s-tflite-litert-fp32 frame.png --json
    """
    from edge_sdk.runtime import load_bundle
    predictor = load_bundle(bundle, threads=threads, compute_units=compute_units)
    batches, names = _load_inputs(predictor, list(images))
    results = []
    for x in batches:
        probs = predictor.probabilities(x)
        results += [predictor.top_k(p, top_k) for p in probs]
    rows = [{"image": n, "top_k": r} for n, r in zip(names, results)]
    if as_json:
        print_json({"bundle": str(bundle), "target": predictor.target, "predictions": rows})
        return
    print_table(f"{bundle.name} ({predictor.target})", ["image", "rank", "label", "index", "prob"],
                [(r["image"] if k == 0 else "", k + 1, c["label"], c["index"], f"{c['prob']:.4f}")
                 for r in rows for k, c in enumerate(r["top_k"])])


commands = [predict_cmd]
