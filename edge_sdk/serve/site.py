"""What the camera page is made of: the static files of apps/web, LiteRT.js from npm, and one bundle.

`site_files(bundle)` is the complete list of URL paths the page needs, each mapped to one file on disk. The server
serves exactly these (nothing else on the machine is reachable) and `edge-sdk app web` copies exactly these, so the
served page and the static copy cannot drift apart.
"""
from __future__ import annotations

import os
from pathlib import Path

from edge_sdk.bundle import Bundle, read_bundle
from edge_sdk.errors import EdgeError, UsageError

# apps/web in a source checkout (edge-sdk is installed editable); EDGE_SDK_WEB_DIR points elsewhere.
WEB_DIR = Path(os.environ.get("EDGE_SDK_WEB_DIR") or Path(__file__).resolve().parents[2] / "apps" / "web")
PAGE_FILES = ("index.html", "style.css", "js/app.js", "js/camera.js", "js/engine.js", "js/preprocess.js",
              "js/stats.js")
# LiteRT.js from npm (apps/web/package.json): the ES module, its loader helper, and the wasm builds it picks from.
VENDOR = {
    "vendor/litertjs/core/dist/index.js": "node_modules/@litertjs/core/dist/index.js",
    "vendor/litertjs/wasm-utils/dist/index.js": "node_modules/@litertjs/wasm-utils/dist/index.js",
    **{f"vendor/litertjs/core/wasm/{n}.{ext}": f"node_modules/@litertjs/core/wasm/{n}.{ext}"
       for n in ("litert_wasm_internal", "litert_wasm_compat_internal", "litert_wasm_jspi_internal")
       for ext in ("js", "wasm")},
}
PAGE_DTYPES = ("float32", "uint8", "int32")  # tensor element types LiteRT.js 2.5 accepts
WEB_DEPS_HINT = "run `make web-deps` (npm ci in apps/web)"


def open_web_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle the page can run (.tflite); anything else is one error naming the fix."""
    bundle = read_bundle(path, verify=True)
    m = bundle.manifest
    if m.target != "tflite" or not m.file.endswith(".tflite"):
        name = m.model.name or "MODEL"
        raise UsageError(f"{Path(path)} is a {m.target} bundle ({m.file}); the browser page runs LiteRT "
                         f".tflite bundles: make one with `edge-sdk convert {name} --target tflite --nhwc`")
    dtypes = {m.input.dtype, m.output.dtype}
    unsupported = sorted(dtypes - set(PAGE_DTYPES))
    if unsupported:
        name = m.model.name or "MODEL"
        raise UsageError(f"{Path(path)} has {'/'.join(unsupported)} input/output tensors, which LiteRT.js cannot feed "
                         f"(it takes {', '.join(PAGE_DTYPES)}); make a float-I/O bundle with `edge-sdk convert {name} "
                         f"--target tflite --nhwc` (fp32, fp16 or dynamic_int8 keep float I/O)")
    return bundle


def site_files(bundle: Bundle) -> dict[str, Path]:
    """URL path (no leading slash) -> file, for the page, LiteRT.js and the bundle's manifest/labels/model."""
    files = {p: WEB_DIR / p for p in PAGE_FILES}
    files.update({url: WEB_DIR / rel for url, rel in VENDOR.items()})
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise EdgeError(f"the web page files are incomplete ({missing[0]} is missing); {WEB_DEPS_HINT}")
    m = bundle.manifest
    files["bundle/manifest.json"] = bundle.path / "manifest.json"
    files[f"bundle/{m.file}"] = bundle.model_file
    if m.labels:
        files[f"bundle/{m.labels}"] = bundle.path / m.labels
    return files
