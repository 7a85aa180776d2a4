"""`edge-sdk app ios|android|web BUNDLE -o DIR`: a ready camera-app project with the bundle embedded.

The project templates live in apps/ios, apps/android and apps/web; the bundle's model file, manifest.json and
labels.txt are copied where each platform loads resources from, then re-hashed: the copy must match the
manifest's sha256 (and the source files byte for byte) or nothing is written. DIR appears in one rename.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

APPS = Path(__file__).resolve().parents[2] / "apps"
# where each platform's app reads the bundle from, inside the project
BUNDLE_DIR = {"ios": "EdgeCamera/Bundle", "android": "app/src/main/assets/bundle", "web": "bundle"}
SKIP = shutil.ignore_patterns("build", ".gradle", "DerivedData", "*.xcuserdatad", "local.properties", ".idea",
                              "node_modules", "tools", "package*.json", ".DS_Store")


def _runs_on(platform: str, manifest: Any) -> str | None:
    """None when the platform's app can run this bundle (`manifest`: an edge_sdk.manifest.Manifest), else the
    command that makes one it can."""
    target, name, file = manifest.target, manifest.model.name or "MODEL", manifest.file
    if platform == "ios" and not (target == "coreml" and file.endswith(".mlpackage")):
        return (f"the iOS app runs Core ML .mlpackage bundles (got {target} {file}); make one with "
                f"`edge-sdk convert {name} --target coreml`")
    if platform == "android" and not (target == "tflite" or (target == "executorch" and
                                                             manifest.backend == "xnnpack")):
        return (f"the Android app runs LiteRT .tflite or ExecuTorch XNNPACK .pte bundles (got {target}/"
                f"{manifest.backend}); make one with `edge-sdk convert {name} --target tflite --nhwc`")
    return None


def _copy_bundle(bundle, dest: Path, manifest: Any) -> list[tuple[str, str]]:
    """Copy manifest, labels and model file; returns (relative path, sha256) of each, all verified."""
    from edge_sdk.bundle import read_bundle, sha256_file
    from edge_sdk.errors import EdgeError
    dest.mkdir(parents=True, exist_ok=True)
    names = ["manifest.json", manifest.file] + ([manifest.labels] if manifest.labels else [])
    rows = []
    for rel in names:
        src, dst = bundle.path / rel, dest / rel
        if src.is_dir():  # .mlpackage
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        digest = sha256_file(dst)
        if digest != sha256_file(src):
            raise EdgeError(f"copy of {rel} does not match the bundle (sha256 {digest[:12]}...)")
        rows.append((rel, digest))
    read_bundle(dest, verify=True)  # the embedded copy passes the manifest's sha256, as the app will check
    return rows


def build_project(platform: str, bundle_path: Path, out: Path, force: bool = False,
                  budget_ms: float = 50.0) -> list[tuple[str, str]]:
    """Write the project to `out` atomically; returns the embedded files with their sha256."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.errors import EdgeError, UsageError
    from edge_sdk.serve.site import open_web_bundle, site_files

    bundle = open_web_bundle(bundle_path) if platform == "web" else read_bundle(bundle_path, verify=True)
    manifest = bundle.manifest
    why = _runs_on(platform, manifest)
    if why:
        raise UsageError(why)
    out = out.absolute()
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        project = tmp / "p"
        if platform == "web":
            for url, src in site_files(bundle).items():
                if not url.startswith("bundle/"):
                    (project / url).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, project / url)
            (project / "config.json").write_text(json.dumps({"budget_ms": budget_ms, "report": False}) + "\n")
        else:
            template = APPS / platform
            if not template.is_dir():
                raise EdgeError(f"app template {template} is missing (edge-sdk runs from a source checkout)")
            shutil.copytree(template, project, ignore=SKIP)
        rows = _copy_bundle(bundle, project / BUNDLE_DIR[platform], manifest)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(project, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(project, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [(f"{BUNDLE_DIR[platform]}/{rel}", digest) for rel, digest in rows]


NEXT_STEPS = {
    "ios": "open it in Xcode (see {out}/README.md: xcodegen generate, or add the files to a new App project)",
    "android": "open it in Android Studio, or run `gradle wrapper && ./gradlew installDebug` in {out} "
               "(see {out}/README.md)",
    "web": "host the folder over HTTPS (phones need a secure context), or try it here: "
           "python -m http.server -d {out} 8000",
}


@click.command("app")
@click.argument("platform", type=click.Choice(["ios", "android", "web"]))
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Project folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing folder.")
@click.option("--budget-ms", default=50.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Latency budget shown by the web page (native apps read theirs from Config).")
@click.option("--json", "as_json", is_flag=True, help="Print the embedded files and hashes as JSON.")
def app_cmd(platform: str, bundle: Path, out: Path, force: bool, budget_ms: float, as_json: bool) -> None:
    """Write a ready camera-app project for PLATFORM with BUNDLE embedded (sha256 checked after the copy).

    ios: SwiftUI + AVFoundation + Core ML (Vision) on a .mlpackage bundle. android: Kotlin + CameraX + LiteRT
    (.tflite) or ExecuTorch (.pte). web: the static camera page (LiteRT.js) for any static host.

    \b
    Example:
      edge-sdk convert levit_128s --target coreml -o bundles/
      edge-sdk app ios bundles/levit_128s-coreml-fp16 -o MyCameraApp
      edge-sdk app android bundles/levit_128s-tflite-litert-fp32-nhwc -o android-app
      edge-sdk app web bundles/levit_128s-tflite-litert-fp32-nhwc -o site
    """
    from edge_sdk.output import console, print_json
    rows = build_project(platform, bundle, out, force=force, budget_ms=budget_ms)
    if as_json:
        print_json({"platform": platform, "out": str(out), "files": [{"path": p, "sha256": h} for p, h in rows]})
        return
    console.print(f"wrote {platform} project {out} with {bundle.name} embedded:", highlight=False)
    for p, h in rows:
        console.print(f"  {p}  sha256 {h[:16]}…  ok", highlight=False)
    console.print("next: " + NEXT_STEPS[platform].format(out=out), highlight=False, soft_wrap=True)


commands = [app_cmd]
