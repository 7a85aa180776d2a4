"""The bundle manifest as one typed contract: `Manifest`, `InputSpec`, `OutputSpec` (frozen dataclasses).

Why one module: writers (converters) and readers (runtime, parity, validate, bench, android, apps) used to pass an
untyped dict around and read it through dozens of string keys, so a hand-edited manifest (`crop: 0`, a wrong-length
mean, a string where a number belongs) reached deep code as a traceback. Here `Manifest.from_json` checks every
field's type and range once, at the door, and a bad field becomes ONE `ManifestError` line that names it. Everything
after that reads attributes (`manifest.input.crop`). Only the standard library is imported, so the light (torch-free)
install can read any bundle.

The JSON layout is schema 1, unchanged (so every existing bundle still loads):

    schema_version: 1                      created: ISO-8601 UTC time
    model: {name, family, num_classes, config, deploy, params, macs, checkpoint_sha256}
    target, backend, precision: names      file: model file inside the bundle      sha256: hex digest of it
    input: {name, shape, layout, dtype, color, scale, resize, crop, mean, std, normalization_in_model,
            quantization: null | {scale, zero_point}, ...target-owned extras}
    output: {name, shape, dtype, kind: logits | probabilities, quantization, ...target-owned extras}
    labels: "labels.txt" | null            toolchain: {package: version}
    report: target-owned dict              parity: {status: passed | failed | not_run, ...} (edge_sdk.parity)
    reference: "reference.npz" | null      conversion: dict | null      extra: dict (optional)
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from edge_sdk.errors import EdgeError, did_you_mean

SCHEMA_VERSION = 1
READABLE_SCHEMAS = (1,)
LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "uint8", "int8")
OUTPUT_DTYPES = ("float32", "float16", "uint8", "int8")
OUTPUT_KINDS = ("logits", "probabilities")
COLORS = ("RGB",)
PARITY_STATUSES = ("passed", "failed", "not_run")
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
MAX_SIDE = 8192  # pixels: far above any mobile model, low enough to refuse absurd allocations
HINT = "fix the field or re-convert the bundle with `edge-sdk convert`"


class ManifestError(EdgeError):
    """A manifest field has the wrong type or an impossible value; the message is one line naming the field."""


# ---- the field reader: one place for type and range checks ---------------------------------------------------------

class _Fields:
    """Reads one JSON object, naming each field by its dotted path (`input.crop`) in every error."""

    def __init__(self, obj: Any, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(obj, Mapping):
            self.fail(where or "manifest", f"must be a JSON object, got {_kind(obj)}")
        self.obj = obj

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, name: str, problem: str) -> None:
        raise ManifestError(f"{self.source}: field {name} {problem} ({HINT})")

    def only(self, known: tuple[str, ...]) -> None:
        """Refuse unknown keys (a typo such as `precison` would otherwise be silently ignored)."""
        for key in self.obj:
            if key not in known:
                self.fail(self.path(str(key)), f"is not a manifest field{did_you_mean(str(key), known)}")

    def get(self, key: str, optional: bool, default: Any = None) -> Any:
        if key not in self.obj:
            if optional:
                return default
            self.fail(self.path(key), "is missing")
        return self.obj[key]

    def str_(self, key: str, optional: bool = False, choices: tuple[str, ...] = (), default: Any = None) -> Any:
        v = self.get(key, optional, default)
        if v is None and optional:
            return v
        if not isinstance(v, str) or not v:
            self.fail(self.path(key), f"must be a non-empty string, got {_kind(v)}")
        if choices and v not in choices:
            self.fail(self.path(key), f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def int_(self, key: str, lo: int | None = None, hi: int | None = None, optional: bool = False) -> Any:
        return self.check_int(self.path(key), self.get(key, optional), lo, hi, optional)

    def check_int(self, name: str, v: Any, lo: int | None, hi: int | None, optional: bool = False) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(name, f"must be an integer, got {_kind(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(name, f"must be an integer {_range_text(lo, hi)}, got {v}")
        return v

    def float_(self, key: str, positive: bool = False, optional: bool = False, default: Any = None) -> Any:
        return self.check_float(self.path(key), self.get(key, optional, default), positive, optional)

    def check_float(self, name: str, v: Any, positive: bool = False, optional: bool = False) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(name, f"must be a finite number, got {_kind(v)}")
        if positive and v <= 0:
            self.fail(name, f"must be > 0, got {v}")
        return float(v)

    def bool_(self, key: str, optional: bool = False, default: bool = False) -> bool:  # noqa: FBT001
        v = self.get(key, optional, default)
        if not isinstance(v, bool):
            self.fail(self.path(key), f"must be true or false, got {_kind(v)}")
        return v

    def dict_(self, key: str, optional: bool = False, nullable: bool = False, default: Any = None) -> Any:
        v = self.get(key, optional, default)
        if v is None and nullable:
            return None
        if not isinstance(v, dict):
            self.fail(self.path(key), f"must be a JSON object, got {_kind(v)}")
        return v

    def floats3(self, key: str, positive: bool = False) -> tuple[float, float, float]:
        v = self.get(key, False)
        if not isinstance(v, list) or len(v) != 3:
            self.fail(self.path(key), f"must be a list of 3 numbers (R, G, B), got {_kind(v)}")
        return tuple(self.check_float(f"{self.path(key)}[{i}]", x, positive) for i, x in enumerate(v))  # type: ignore

    def shape(self, key: str, optional: bool = False, rank: int | None = None,
              nullable: bool = False) -> tuple[int, ...] | None:
        v = self.get(key, optional)
        if v is None and (optional or nullable):
            return None
        if not isinstance(v, list) or not v or (rank is not None and len(v) != rank):
            want = f"a list of {rank} integers" if rank else "a non-empty list of integers"
            self.fail(self.path(key), f"must be {want}, got {_kind(v)}")
        dims = [self.check_int(f"{self.path(key)}[{i}]", d, -1 if i == 0 else 1, 1 << 20) for i, d in enumerate(v)]
        if dims[0] == 0:
            self.fail(f"{self.path(key)}[0]", "must be a batch size >= 1 (or -1: any), got 0")
        return tuple(dims)

    def quantization(self, key: str, dtype: str) -> Quantization | None:
        q = self.dict_(key, optional=True, nullable=True)
        if q is None:
            return None
        sub = _Fields(q, self.path(key), self.source)
        sub.only(("scale", "zero_point"))
        lo, hi = INT_RANGES.get(dtype, (None, None))
        return Quantization(sub.float_("scale", positive=True), sub.int_("zero_point", lo, hi))


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"number {v}"
    if isinstance(v, str):
        return f"string {v[:40]!r}"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    return type(v).__name__ if not isinstance(v, Mapping) else "an object"


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo}, {hi}]"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def _plain(v: Any) -> Any:
    """Tuples -> lists and dataclasses -> dicts, for json.dumps."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {k: _plain(x) for k, x in dataclasses.asdict(v).items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


# ---- the dataclasses ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int


_INPUT_KEYS = ("name", "shape", "layout", "dtype", "color", "scale", "resize", "crop", "mean", "std",
               "normalization_in_model", "quantization")


@dataclass(frozen=True)
class InputSpec:
    """How to turn a decoded image into the model file's input: the whole preprocessing, nothing implied.

    `crop` is the square input size (a DeployConfig calls it `input_size`; `from_deploy` is the one translation).
    `shape`, `layout`, `dtype`, `quantization`, `normalization_in_model` are facts of the model file (the target
    writes them); `resize`, `crop`, `mean`, `std` come from the model's deploy config.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    shape: tuple[int, ...] | None = None
    layout: str = "NCHW"
    dtype: str = "float32"
    name: str | None = None
    color: str = "RGB"
    scale: float = 1 / 255
    normalization_in_model: bool = False
    quantization: Quantization | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int | None:
        """The batch size baked into the model file, or None when it takes any."""
        return self.shape[0] if self.shape and self.shape[0] > 0 else None

    @classmethod
    def from_deploy(cls, deploy: Any, **file_facts: Any) -> InputSpec:
        """A model's DeployConfig (or its `to_dict()`) plus the target's facts about the file -> a checked spec."""
        d = deploy if isinstance(deploy, Mapping) else {k: getattr(deploy, k, None)
                                                         for k in ("input_size", "resize", "mean", "std")}
        obj: dict[str, Any] = {"resize": d.get("resize"), "crop": d.get("input_size"),
                               "mean": _plain(d.get("mean")), "std": _plain(d.get("std")), "shape": None,
                               "layout": "NCHW", "dtype": "float32", "color": "RGB", "normalization_in_model": False}
        extras = dict(file_facts.pop("extras", None) or {})
        obj.update({k: _plain(v) for k, v in file_facts.items()})
        return cls.from_json({**obj, **extras}, source="deploy config", where="input")

    @classmethod
    def from_json(cls, obj: Any, source: str = "manifest", where: str = "input") -> InputSpec:
        f = _Fields(obj, where, source)
        layout = f.str_("layout", choices=LAYOUTS)
        dtype = f.str_("dtype", choices=INPUT_DTYPES)
        spec = cls(resize=f.int_("resize", 1, MAX_SIDE), crop=f.int_("crop", 1, MAX_SIDE),
                   mean=f.floats3("mean"), std=f.floats3("std", positive=True),
                   shape=f.shape("shape", rank=4, nullable=True), layout=layout, dtype=dtype,
                   name=f.str_("name", optional=True), color=f.str_("color", choices=COLORS),
                   scale=f.float_("scale", positive=True, optional=True, default=1 / 255),
                   normalization_in_model=f.bool_("normalization_in_model"),
                   quantization=f.quantization("quantization", dtype),
                   extras={k: v for k, v in obj.items() if k not in _INPUT_KEYS})
        _check_input_shape(f, spec)
        return spec

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": _plain(self.shape), "layout": self.layout, "dtype": self.dtype,
                "color": self.color, "scale": self.scale, "resize": self.resize, "crop": self.crop,
                "mean": list(self.mean), "std": list(self.std), "normalization_in_model": self.normalization_in_model,
                "quantization": _plain(self.quantization), **_plain(self.extras)}

    def replace(self, **changes: Any) -> InputSpec:
        return dataclasses.replace(self, **changes)


def _check_input_shape(f: _Fields, spec: InputSpec) -> None:
    """The file's shape must be 3-channel images of crop x crop in the stated layout (else preprocessing lies)."""
    if spec.shape is None:
        return
    chw = spec.shape[1:] if spec.layout == "NCHW" else (spec.shape[3], spec.shape[1], spec.shape[2])
    if chw != (3, spec.crop, spec.crop):
        f.fail(f.path("shape"), f"{list(spec.shape)} does not match {spec.layout} images of 3 x {spec.crop} x "
                                f"{spec.crop} ({f.path('crop')} {spec.crop})")


_OUTPUT_KEYS = ("name", "shape", "dtype", "kind", "quantization")


@dataclass(frozen=True)
class OutputSpec:
    """The model file's output: shape (batch first), dtype, logits or probabilities, quantization."""

    shape: tuple[int, ...]
    kind: str = "logits"
    dtype: str = "float32"
    name: str | None = None
    quantization: Quantization | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return math.prod(self.shape[1:]) if len(self.shape) > 1 else self.shape[0]

    @classmethod
    def from_json(cls, obj: Any, source: str = "manifest", where: str = "output") -> OutputSpec:
        f = _Fields(obj, where, source)
        dtype = f.str_("dtype", optional=True, choices=OUTPUT_DTYPES, default="float32")
        return cls(shape=f.shape("shape"), kind=f.str_("kind", optional=True, choices=OUTPUT_KINDS, default="logits"),
                   dtype=dtype, name=f.str_("name", optional=True), quantization=f.quantization("quantization", dtype),
                   extras={k: v for k, v in obj.items() if k not in _OUTPUT_KEYS})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": _plain(self.shape), "dtype": self.dtype, "kind": self.kind,
                "quantization": _plain(self.quantization), **_plain(self.extras)}


_MODEL_KEYS = ("name", "family", "num_classes", "config", "deploy", "params", "macs", "checkpoint_sha256")


@dataclass(frozen=True)
class ModelInfo:
    """Where the model file came from: zoo name and family, config, size, and the checkpoint's digest."""

    name: str
    family: str | None = None
    num_classes: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] | None = None
    params: int | None = None
    macs: int | None = None
    checkpoint_sha256: str | None = None

    @classmethod
    def from_json(cls, obj: Any, source: str = "manifest", where: str = "model") -> ModelInfo:
        f = _Fields(obj, where, source)
        f.only(_MODEL_KEYS)
        digest = f.str_("checkpoint_sha256", optional=True)
        if digest is not None and not _SHA256.fullmatch(digest):
            f.fail(f.path("checkpoint_sha256"), "must be 64 hex digits")
        return cls(name=f.str_("name"), family=f.str_("family", optional=True),
                   num_classes=f.int_("num_classes", 1, None, optional=True),
                   config=f.dict_("config", optional=True, default={}),
                   deploy=f.dict_("deploy", optional=True, nullable=True),
                   params=f.int_("params", 0, None, optional=True), macs=f.int_("macs", 0, None, optional=True),
                   checkpoint_sha256=digest)

    def to_json(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOP_KEYS = ("schema_version", "created", "model", "target", "backend", "precision", "file", "sha256", "input",
             "output", "labels", "toolchain", "report", "parity", "reference", "conversion", "extra")


@dataclass(frozen=True)
class Manifest:
    """Everything a bundle says about itself. Read with `Manifest.from_json`, written with `to_json`."""

    model: ModelInfo
    target: str
    backend: str
    precision: str
    file: str
    input: InputSpec
    output: OutputSpec
    labels: str | None
    toolchain: dict[str, Any]
    report: dict[str, Any]
    parity: dict[str, Any]
    sha256: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    reference: str | None = "reference.npz"
    conversion: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def parity_status(self) -> str:
        return self.parity["status"]

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_json(cls, obj: Any, source: str = "manifest.json") -> Manifest:
        """Validate a parsed manifest.json; ManifestError (one line naming the field) on the first bad field."""
        f = _Fields(obj, "", source)
        version = f.get("schema_version", False)
        if isinstance(version, bool) or version not in READABLE_SCHEMAS:
            raise ManifestError(f"{source}: unsupported schema_version {version!r} (this edge-sdk reads "
                                f"{', '.join(map(str, READABLE_SCHEMAS))}); re-convert the bundle with this edge-sdk")
        f.only(_TOP_KEYS)
        digest = f.str_("sha256")
        if not _SHA256.fullmatch(digest):
            f.fail("sha256", "must be 64 lower-case hex digits")
        return cls(model=ModelInfo.from_json(f.get("model", False), source), target=f.str_("target"),
                   backend=f.str_("backend"), precision=f.str_("precision"), file=f.str_("file"),
                   input=InputSpec.from_json(f.get("input", False), source),
                   output=OutputSpec.from_json(f.get("output", False), source),
                   labels=f.str_("labels", optional=True),
                   toolchain=f.dict_("toolchain"), report=f.dict_("report"), parity=_parity(f),
                   sha256=digest, created=f.str_("created", optional=True, default=""), schema_version=version,
                   reference=f.str_("reference", optional=True, default="reference.npz"),
                   conversion=f.dict_("conversion", optional=True, nullable=True),
                   extra=f.dict_("extra", optional=True, default={}))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version, "created": self.created, "model": self.model.to_json(),
            "target": self.target, "backend": self.backend, "precision": self.precision, "file": self.file,
            "sha256": self.sha256, "input": self.input.to_json(), "output": self.output.to_json(),
            "labels": self.labels, "toolchain": _plain(self.toolchain), "report": _plain(self.report),
            "parity": _plain(self.parity), "reference": self.reference, "conversion": _plain(self.conversion)}
        if self.extra:
            out["extra"] = _plain(self.extra)
        return out


def _parity(f: _Fields) -> dict[str, Any]:
    parity = f.dict_("parity")
    sub = _Fields(parity, "parity", f.source)
    sub.str_("status", choices=PARITY_STATUSES)
    return parity
