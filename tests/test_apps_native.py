"""The iOS and Android projects cannot be built here, so what can be checked is checked: every manifest.json field
their sources decode (Swift `Decodable` structs, Kotlin `@Serializable` data classes) exists with that type in real
bundles of the target they run, and `edge-sdk app ios|android` embeds the bundle with matching sha256.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IOS = ROOT / "apps" / "ios"
ANDROID = ROOT / "apps" / "android"
KOTLIN = ANDROID / "app" / "src" / "main" / "java" / "com" / "example" / "edgesdk" / "camera"
TINY = ROOT / "tests" / "assets" / "tiny" / "levit_tiny.pt"


def convert(out: Path, *args: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "convert", str(TINY), "-o", str(out), *args],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return next(p for p in out.iterdir() if (p / "manifest.json").is_file())


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("native_bundles")
    return {"coreml": convert(root / "coreml", "--target", "coreml"),
            "tflite": convert(root / "tflite", "--target", "tflite", "--nhwc"),
            "executorch": convert(root / "executorch", "--target", "executorch")}


# ---- source parsers: {type name: [(json key, type, optional)]} ---------------------------------------------------

def snake(name: str) -> str:
    """Swift's JSONDecoder.convertFromSnakeCase, inverted: normalizationInModel -> normalization_in_model."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def swift_structs(src: str) -> dict[str, list[tuple[str, str, bool]]]:
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for m in re.finditer(r"struct (\w+): Decodable \{", src):
        depth, i, body = 1, m.end(), []
        while depth:  # the struct's own lines (not nested structs' bodies)
            ch = src[i]
            depth += ch == "{"
            depth -= ch == "}"
            if depth == 1 or (depth == 0 and ch == "}"):
                body.append(ch)
            i += 1
        fields = re.findall(r"^\s*let (\w+): ([\w\[\]]+)(\?)?\s*$", "".join(body), re.M)
        out[m.group(1)] = [(snake(n), t, bool(q)) for n, t, q in fields]
    return out


def kotlin_classes(src: str) -> dict[str, list[tuple[str, str, bool]]]:
    out = {}
    for m in re.finditer(r"data class (\w+)\((.*?)\)\s*(?:\{|\n)", src, re.S):
        fields = []
        for f in re.finditer(r'(?:@SerialName\("(\w+)"\)\s*)?val (\w+): ([\w<>]+)(\?)?', m.group(2)):
            fields.append((f.group(1) or f.group(2), f.group(3), bool(f.group(4))))
        out[m.group(1)] = fields
    return out


SCALARS = {"String": str, "Int": int, "Bool": bool, "Boolean": bool, "Double": (int, float), "Float": (int, float)}


def check(obj: dict, type_name: str, types: dict, where: str = "manifest") -> list[str]:
    """Fields the app requires that are missing or of another type in `obj` (recursing into nested types)."""
    problems = []
    for key, t, optional in types[type_name]:
        path = f"{where}.{key}"
        if key not in obj or obj[key] is None:
            if not optional:
                problems.append(f"{path} missing")
            continue
        v = obj[key]
        inner = re.fullmatch(r"\[(\w+)\]|List<(\w+)>", t)
        if inner:
            elem = inner.group(1) or inner.group(2)
            if not isinstance(v, list) or not all(isinstance(x, SCALARS[elem]) and not isinstance(x, bool)
                                                  for x in v):
                problems.append(f"{path} is not a list of {elem}: {v!r}")
        elif t in SCALARS:
            ok = isinstance(v, SCALARS[t]) and (t in ("Bool", "Boolean") or not isinstance(v, bool))
            if not ok:
                problems.append(f"{path} is not {t}: {v!r}")
        else:
            problems += check(v, t, types, path) if isinstance(v, dict) else [f"{path} is not an object"]
    return problems


def test_parsers_find_the_fields():
    """Guard against a parser that silently finds nothing."""
    swift = swift_structs((IOS / "EdgeCamera" / "BundleManifest.swift").read_text())
    assert {"BundleManifest", "Model", "Input", "Output"} <= set(swift)
    assert ("normalization_in_model", "Bool", False) in swift["Input"] and ("crop", "Int", False) in swift["Input"]
    kt = kotlin_classes((KOTLIN / "BundleManifest.kt").read_text())
    assert {"BundleManifest", "InputSpec", "OutputSpec", "Quantization", "ModelInfo"} <= set(kt)
    assert ("zero_point", "Int", False) in kt["Quantization"] and ("quantization", "Quantization", True) in \
        kt["InputSpec"]


def test_swift_reads_only_fields_core_ml_bundles_have(bundles):
    types = swift_structs((IOS / "EdgeCamera" / "BundleManifest.swift").read_text())
    manifest = json.loads((bundles["coreml"] / "manifest.json").read_text())
    assert check(manifest, "BundleManifest", types) == []


@pytest.mark.parametrize("target", ["tflite", "executorch"])
def test_kotlin_reads_only_fields_android_bundles_have(bundles, target):
    types = kotlin_classes((KOTLIN / "BundleManifest.kt").read_text())
    manifest = json.loads((bundles[target] / "manifest.json").read_text())
    assert check(manifest, "BundleManifest", types) == []


def test_check_reports_a_missing_field():
    types = {"T": [("crop", "Int", False), ("q", "String", True)]}
    assert check({"q": "x"}, "T", types) == ["manifest.crop missing"]
    assert check({"crop": True}, "T", types) == ["manifest.crop is not Int: True"]


def _sha(path: Path) -> str:
    from edge_sdk.bundle import sha256_file
    return sha256_file(path)


@pytest.mark.parametrize("platform, target, where", [
    ("ios", "coreml", "EdgeCamera/Bundle"),
    ("android", "tflite", "app/src/main/assets/bundle"),
    ("android", "executorch", "app/src/main/assets/bundle"),
    ("web", "tflite", "bundle"),
])
def test_edge_sdk_app_embeds_the_bundle(bundles, tmp_path, platform, target, where):
    src = bundles[target]
    out = tmp_path / f"{platform}-app"
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "app", platform, str(src), "-o", str(out), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    manifest = json.loads((src / "manifest.json").read_text())
    emb = out / where
    assert _sha(emb / manifest["file"]) == manifest["sha256"] == _sha(src / manifest["file"])
    for name in ("manifest.json", "labels.txt"):
        assert (emb / name).read_bytes() == (src / name).read_bytes()
    assert {f["path"]: f["sha256"] for f in report["files"]}[f"{where}/{manifest['file']}"] == manifest["sha256"]
    assert not (emb / "reference.npz").exists()  # only what the app needs
    sources = {"ios": ("EdgeCamera/Classifier.swift", "project.yml", "README.md"),
               "android": ("app/build.gradle.kts", "settings.gradle.kts",
                           "app/src/main/java/com/example/edgesdk/camera/LiteRtEngine.kt"),
               "web": ("index.html", "js/app.js", "vendor/litertjs/core/dist/index.js", "config.json")}[platform]
    for rel in sources:
        assert (out / rel).is_file(), rel
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temp folder left
    # a second run refuses to overwrite without --force, and replaces with it
    again = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "app", platform, str(src), "-o", str(out)],
                           capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 2 and "--force" in again.stderr
    forced = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "app", platform, str(src), "-o", str(out),
                             "--force"], capture_output=True, text=True, cwd=ROOT)
    assert forced.returncode == 0 and _sha(emb / manifest["file"]) == manifest["sha256"]


@pytest.mark.parametrize("platform, target, hint", [
    ("ios", "tflite", "edge-sdk convert levit_tiny --target coreml"),
    ("android", "coreml", "edge-sdk convert levit_tiny --target tflite --nhwc"),
    ("web", "executorch", "edge-sdk convert levit_tiny --target tflite --nhwc"),
])
def test_edge_sdk_app_refuses_other_targets(bundles, tmp_path, platform, target, hint):
    out = tmp_path / "app"
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "app", platform, str(bundles[target]), "-o",
                           str(out)], capture_output=True, text=True, cwd=ROOT)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and hint in lines[0]
    assert not out.exists()


def test_edge_sdk_app_refuses_a_tampered_bundle(bundles, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(bundles["tflite"], bad)
    with open(bad / "model.tflite", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    proc = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "app", "android", str(bad), "-o",
                           str(tmp_path / "app")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "sha256" in proc.stderr and not (tmp_path / "app").exists()


def test_projects_stay_small():
    """About ten source files each, as the issue asks."""
    swift = list((IOS / "EdgeCamera").glob("*.swift"))
    kotlin = list(KOTLIN.glob("*.kt"))
    assert 6 <= len(swift) <= 12 and 5 <= len(kotlin) <= 12


def test_edge_sdk_demo_is_the_camera_demo(bundles, tmp_path):
    """`edge-sdk demo` runs apps/camera/camera_demo.py: same frames, same top-3, same errors and exit codes."""
    sys.path.insert(0, str(ROOT / "tests"))
    from runtime_bundles import write_pngs
    folder = tmp_path / "imgs"
    write_pngs(folder, 3)
    args = [str(bundles["tflite"]), "--source", str(folder), "--headless", "--json"]
    cmd = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "demo", *args], capture_output=True, text=True,
                         cwd=ROOT)
    script = subprocess.run([sys.executable, str(ROOT / "apps" / "camera" / "camera_demo.py"), *args],
                            capture_output=True, text=True, cwd=ROOT)
    assert cmd.returncode == script.returncode == 0, cmd.stderr
    a, b = json.loads(cmd.stdout), json.loads(script.stdout)
    assert a["frames"] == b["frames"] == 3
    assert [f["top"] for f in a["per_frame"]] == [f["top"] for f in b["per_frame"]]
    bad = subprocess.run([sys.executable, "-m", "edge_sdk.cli", "demo", str(bundles["tflite"]), "--source", "7",
                          "--headless"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.startswith("error: no camera at index 7") and "Traceback" not in bad.stderr
