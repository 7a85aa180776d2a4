"""Coverage-guided fuzzing (atheris, PyPI) of manifest parsing and image decoding; run by `make fuzz`.

    python tests/fuzz/atheris_harness.py manifest CORPUS_DIR -runs=20000 -max_total_time=120
    python tests/fuzz/atheris_harness.py image CORPUS_DIR -runs=20000 -max_total_time=120

Any exception other than EdgeError is a finding (atheris prints it and exits non-zero, writing the input to
crash-*). Seed corpora: a real manifest.json (EDGE_SDK_FUZZ_BUNDLE=<bundle dir>) and small valid images.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["edge_sdk"]):
    from edge_sdk.bundle import read_bundle
    from edge_sdk.errors import EdgeError
    from edge_sdk.preprocess import read_image

WORK = Path(tempfile.mkdtemp(prefix="edge-sdk-atheris-"))
BUNDLE = WORK / "bundle"


def _setup_bundle() -> None:
    BUNDLE.mkdir(exist_ok=True)
    (BUNDLE / "model.tflite").write_bytes(b"\x18\x00\x00\x00TFL3" + bytes(64))
    (BUNDLE / "labels.txt").write_text("".join(f"c{i}\n" for i in range(10)))


def fuzz_manifest(data: bytes) -> None:
    """read_bundle on a folder whose manifest.json is the input (verify=False so parsing goes past the sha256)."""
    (BUNDLE / "manifest.json").write_bytes(data)
    try:
        read_bundle(BUNDLE, verify=False)
    except EdgeError:
        pass


def fuzz_image(data: bytes) -> None:
    """read_image on a file holding the input (header-size check, then OpenCV decoding)."""
    path = WORK / "input.img"
    path.write_bytes(data)
    try:
        read_image(path)
    except EdgeError:
        pass


def seed_corpus(kind: str, corpus: Path) -> None:
    """Valid inputs to start from, so mutations reach deep code instead of failing at byte 0."""
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    if kind == "manifest":
        src = os.environ.get("EDGE_SDK_FUZZ_BUNDLE")
        if src and (Path(src) / "manifest.json").is_file():
            (corpus / "real.json").write_bytes((Path(src) / "manifest.json").read_bytes())
        (corpus / "empty.json").write_bytes(b"{}")
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import fuzzlib
        for name, data in fuzzlib.image_bases().items():
            (corpus / name.replace(".", "_")).write_bytes(data)


def main() -> None:
    kind = sys.argv[1]
    if kind not in ("manifest", "image"):
        raise SystemExit("usage: atheris_harness.py manifest|image CORPUS_DIR [libFuzzer flags]")
    args = [sys.argv[0]] + sys.argv[2:]
    corpus = next((Path(a) for a in sys.argv[2:] if not a.startswith("-")), None)
    if corpus is not None:
        seed_corpus(kind, corpus)
    _setup_bundle()
    atheris.Setup(args, fuzz_manifest if kind == "manifest" else fuzz_image)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
