"""`edge-sdk demo BUNDLE --source 0|VIDEO|IMAGE_DIR`: the Python/OpenCV camera demo (apps/camera) as a command.

A thin adapter: the options are turned back into the demo's own argv and `camera_demo.main` runs them, so the
command and `python apps/camera/camera_demo.py` cannot behave differently.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import click

DEMO = Path(__file__).resolve().parents[2] / "apps" / "camera" / "camera_demo.py"


def load_demo() -> ModuleType:
    """Import apps/camera/camera_demo.py (it puts its own folder on sys.path for its helpers)."""
    from edge_sdk.errors import EdgeError
    if not DEMO.is_file():
        raise EdgeError(f"{DEMO} is missing (edge-sdk demo runs from a source checkout)")
    spec = importlib.util.spec_from_file_location("camera_demo", DEMO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@click.command("demo")
@click.argument("bundle")
@click.option("--source", default="0", show_default=True, help="Camera index, a video file, or a folder of images.")
@click.option("--threads", type=int, default=None, help="CPU threads of the runtime (default: its own).")
@click.option("--budget-ms", type=float, default=50.0, show_default=True, help="Per-frame latency budget.")
@click.option("--headless", is_flag=True, help="No window (servers, CI); use --out to keep the frames.")
@click.option("--out", default=None, help="Write the annotated frames to a video (.mp4, .avi, .mkv).")
@click.option("--max-frames", type=int, default=None, help="Stop after N frames.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout (with per-frame top-3).")
def demo_cmd(bundle: str, source: str, threads: int | None, budget_ms: float, headless: bool, out: str | None,
             max_frames: int | None, as_json: bool) -> None:
    """Classify camera / video / image-folder frames with BUNDLE and overlay top-3, latency and FPS.

    The same program as `python apps/camera/camera_demo.py` (see apps/camera/README.md): a window, or with
    --headless an annotated video; a latency summary at the end. Exit 1 on a failure, 2 on bad arguments.

    \b
    Example:
      edge-sdk demo bundles/levit_128s-executorch-xnnpack-fp32                 # default camera, in a window
      edge-sdk demo BUNDLE --source clip.mp4 --headless --out annotated.mp4 --json > summary.json
      edge-sdk demo BUNDLE --source photos/ --headless --max-frames 100
    """
    argv = [bundle, "--source", source, "--budget-ms", repr(budget_ms)]
    argv += ["--threads", str(threads)] if threads is not None else []
    argv += ["--out", out] if out is not None else []
    argv += ["--max-frames", str(max_frames)] if max_frames is not None else []
    argv += ["--headless"] if headless else []
    argv += ["--json"] if as_json else []
    code = load_demo().main(argv)
    if code:
        sys.exit(code)  # the demo already printed its one `error: ...` line


commands = [demo_cmd]
