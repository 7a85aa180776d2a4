"""Real-photo checks of a pretrained classifier and its bundles: top-1 class groups, int8/mixed top-1 agreement
with fp32 and fp16 cosine over >= 200 views (crops, flips, scales) of public-domain photos.

    .venv/bin/python benchmarks/real_photos.py [--model efficientnet_lite0] [--bundles DIR] [--out results/...]

Converts the model's published weights (`create_model(name, pretrained=True)`) to every runnable bundle
(ExecuTorch XNNPACK fp32/int8/mixed, TFLite fp32/fp16/dynamic_int8/int8; default calibration), or reuses the
bundles in --bundles; runs PyTorch and each bundle through the runtime Predictor on every view; writes the table
(benchmarks/results/real_photos.json + .md) and records each bundle's numbers in its manifest's parity block
(`parity["real_photos"]`). tests/test_efficientnet_photos.py runs the same functions in the suite.
Photos: tests/assets/photos (scikit-image samples, CC0 / public domain; SOURCES.md there).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "assets" / "photos"
# Each photo's correct ImageNet-1k class group (indices into models/imagenet_classes.txt).
GROUPS: dict[str, tuple[int, ...]] = {
    "cat": (281, 282, 283, 284, 285),   # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": (967, 968, 504),          # espresso, cup, coffee mug
    "rocket": (657, 744, 812),          # missile, projectile, space shuttle
    "cameraman": (872, 759, 732),       # tripod, reflex camera, Polaroid camera
}
# (target, precision) of every bundle that runs on this host (Core ML files do not run on Linux).
RUNNABLE = (("executorch", "fp32"), ("executorch", "int8"), ("executorch", "mixed"),
            ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "dynamic_int8"), ("tflite", "int8"))
CROPS = (1.0, 0.85, 0.7, 0.55)  # side of the square-ish crop as a fraction of the photo
OFFSETS = ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0), (0.5, 1), (0, 0.5), (1, 0.5))
AGREEMENT_BAR, COSINE_BAR = 0.98, 0.999


def photos() -> dict[str, np.ndarray]:
    """name -> decoded BGR uint8 photo."""
    import cv2
    out = {}
    for name in GROUPS:
        img = cv2.imread(str(PHOTOS / f"{name}.jpg"), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(PHOTOS / f"{name}.jpg")
        out[name] = img
    return out


def views(img: np.ndarray) -> list[np.ndarray]:
    """56 distinct views of one photo: the whole photo plus 3 crop scales x 9 positions, each as is and mirrored
    (the Predictor then resizes and center-crops each exactly as a camera frame). The whole photo is taken once,
    not at 9 positions that would all be the same view."""
    h, w = img.shape[:2]
    out = []
    for frac in CROPS:
        ch, cw = max(32, int(h * frac)), max(32, int(w * frac))
        for ox, oy in (OFFSETS[:1] if frac == 1.0 else OFFSETS):
            y0, x0 = int((h - ch) * oy), int((w - cw) * ox)
            crop = np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw])
            out += [crop, np.ascontiguousarray(crop[:, ::-1])]
    return out


def all_views() -> tuple[list[np.ndarray], list[str]]:
    imgs, names = [], []
    for name, img in photos().items():
        v = views(img)
        imgs += v
        names += [name] * len(v)
    return imgs, names


def logits_of(predictor: Any, images: list[np.ndarray], batch: int = 1) -> np.ndarray:
    """(N, classes) outputs for BGR images through the predictor's own preprocessing."""
    outs = [predictor.run(predictor.preprocess(images[i:i + batch])) for i in range(0, len(images), batch)]
    return np.concatenate(outs).astype(np.float64)


def photo_top1(predictor: Any) -> dict[str, dict[str, Any]]:
    """Per photo (full frame): top-1 index, label, probability and whether it is in the photo's class group."""
    from edge_sdk.runtime.predictor import softmax
    res = {}
    for name, img in photos().items():
        p = softmax(logits_of(predictor, [img]))[0]
        i = int(np.argmax(p))
        res[name] = {"index": i, "label": predictor.label(i), "prob": round(float(p[i]), 4),
                     "correct": i in GROUPS[name]}
    return res


def agreement(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and logit cosine (mean, min) of `out` against the fp32 reference over the same views."""
    cos = (ref * out).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    return {"views": int(len(ref)), "top1_agreement": round(float((ref.argmax(1) == out.argmax(1)).mean()), 4),
            "cosine_mean": round(float(cos.mean()), 6), "cosine_min": round(float(cos.min()), 6)}


def group_accuracy(out: np.ndarray, names: list[str]) -> float:
    """Fraction of views whose top-1 lies in their photo's class group."""
    return round(float(np.mean([int(i) in GROUPS[n] for i, n in zip(out.argmax(1), names)])), 4)


def convert_all(model: Any, out_dir: Path) -> dict[tuple[str, str], Path]:
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    bundles = {}
    for target, precision in RUNNABLE:
        (res,) = convert(model, target, ConvertOptions(precision=precision), out_dir, force=True,
                         show_progress=False)
        bundles[(target, precision)] = res.bundle
    return bundles


def evaluate(name: str, bundles: dict[tuple[str, str], Path], record: bool = True) -> dict[str, Any]:
    """Every number of the README table; with `record`, each bundle's parity block gets its own row."""
    from edge_sdk.bundle import read_bundle, update_manifest
    from edge_sdk.models import create_model
    from edge_sdk.runtime import load_bundle
    from edge_sdk.runtime.predictor import TorchPredictor
    imgs, names = all_views()
    torch_pred = TorchPredictor(create_model(name, pretrained=True))
    rows: dict[str, Any] = {"pytorch": {"photos": photo_top1(torch_pred),
                                        "view_group_accuracy": group_accuracy(logits_of(torch_pred, imgs, 8), names)}}
    outs = {}
    for (target, precision), path in bundles.items():
        pred = load_bundle(path)
        outs[(target, precision)] = out = logits_of(pred, imgs)
        rows[f"{target}-{precision}"] = {"photos": photo_top1(pred), "view_group_accuracy": group_accuracy(out, names),
                                         "bundle": str(path)}
    for (target, precision), out in outs.items():
        row = rows[f"{target}-{precision}"]
        if precision != "fp32" and (target, "fp32") in outs:
            row.update(agreement(outs[(target, "fp32")], out))
            bar = ("cosine_mean", COSINE_BAR) if precision == "fp16" else ("top1_agreement", AGREEMENT_BAR)
            row["bar"] = f"{bar[0]} >= {bar[1]}"
            row["meets_bar"] = bool(row[bar[0]] >= bar[1])
        if record:
            parity = dict(read_bundle(bundles[(target, precision)]).manifest.parity)
            parity["real_photos"] = {k: v for k, v in row.items() if k != "bundle"}
            update_manifest(bundles[(target, precision)], parity=parity)
    return rows


def _machine() -> dict[str, Any]:
    import torch
    from edge_sdk import doctor
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": __import__("os").cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, **doctor.toolchain_versions()}


def to_markdown(rows: dict[str, Any]) -> str:
    lines = ["| runtime | cat | coffee | rocket | cameraman | views in group | top-1 agreement vs fp32 | "
             "logit cosine (mean / min) |", "|---|---|---|---|---|---|---|---|"]
    for key, row in rows.items():
        cells = [f"{p['label'].split(',')[0]} {p['prob']:.2f}{'' if p['correct'] else ' (WRONG)'}"
                 for p in row["photos"].values()]
        agree = f"{row['top1_agreement']:.1%} of {row['views']}" if "top1_agreement" in row else "-"
        cos = f"{row['cosine_mean']:.4f} / {row['cosine_min']:.4f}" if "cosine_mean" in row else "-"
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {row['view_group_accuracy']:.1%} | {agree} | {cos} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--bundles", type=Path, default=Path("/tmp/real_photo_bundles"))
    ap.add_argument("--reuse", action="store_true", help="use the bundles already in --bundles")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real_photos")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from edge_sdk.converters.pipeline import bundle_name
    from edge_sdk.models import create_model
    start = time.time()
    if args.reuse:
        bundles = {(t, p): args.bundles / bundle_name(args.model, t, "xnnpack" if t == "executorch" else "litert",
                                                      p, False) for t, p in RUNNABLE}
        bundles = {k: v for k, v in bundles.items() if (v / "manifest.json").is_file()}  # what was built
    else:
        bundles = convert_all(create_model(args.model, pretrained=True), args.bundles)
    rows = evaluate(args.model, bundles)
    result = {"model": args.model, "machine": _machine(), "seconds": round(time.time() - start, 1), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(f"# {args.model}: real photos per runtime\n\n{to_markdown(rows)}\n"
                                           f"Machine: {json.dumps(result['machine'])}\n")
    print(to_markdown(rows))


if __name__ == "__main__":
    main()
