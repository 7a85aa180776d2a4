"""Every model source the pipeline accepts, resolved into one `Source` (a ready nn.Module + where it came from).

Kinds (`source_kind`):
- a zoo name (`create_model(name, ..., pretrained=...)`), optionally with `--checkpoint FILE`;
- an edge-sdk checkpoint file (`runs/x/best.pt`: the model name is inside);
- a saved `torch.export` program (`model.pt2`, from `torch.export.save`): its example input gives the input size;
- user code: `path/to/file.py:factory` or `package.module:factory`, a callable returning an `nn.Module`, with
  `--weights FILE` (safetensors or a weights-only state dict).

The last two carry no deploy settings, so those come from options (`--input-size`, `--mean/--std`, `--crop-pct`,
`--labels`, `--num-classes`) and go into the manifest exactly as a zoo model's `DeployConfig` does: the model is
wrapped in `ExternalModel`, which has the zoo contract (`deploy`, `num_classes`, `example_inputs`, `config_dict`),
so nothing downstream needs to know where a model came from. A timm model's `pretrained_cfg` supplies defaults.

Safety: importing user code runs it (that is the point of `file.py:factory`). Weights and .pt2 files are loaded
without unpickling code: safetensors, `torch.load(weights_only=True)`, and `torch.export.load` with every pickle
path it has forced to weights-only or refused (`_no_code_unpickling`).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from edge_sdk.errors import EdgeError, UsageError
from edge_sdk.models import DeployConfig, EdgeModel


@dataclass
class Source:
    """The resolved PyTorch model and where it came from (defined here, imported by the pipeline: no cycle)."""

    model: nn.Module
    name: str
    checkpoint: Path | None = None
    labels: list[str] = field(default_factory=list)


PT2_META = "edge_sdk.json"  # extra file edge-sdk writes into a .pt2 (deploy settings, applied rewrites)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
_FACTORY = re.compile(r"^(?P<module>.+?):(?P<attr>[A-Za-z_][A-Za-z0-9_]*)$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class SourceOptions:
    """Options that shape a source. Deploy settings apply to .pt2 and factory sources (zoo models carry theirs)."""

    checkpoint: Path | None = None
    weights: Path | None = None
    pretrained: bool | str | None = None
    input_size: int | None = None
    num_classes: int | None = None
    labels: tuple[str, ...] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_pct: float | None = None
    # convert needs real normalization; lint can analyse with ImageNet defaults (its parity is function equality)
    require_deploy: bool = True


# ---- the model wrapper that gives user models the zoo contract ----------------------------------------------------

class ExternalModel(EdgeModel):
    """A user's module with the zoo contract: deploy config, class count, example inputs, a JSON-able config.

    The user's module sits at attribute `net`; reports strip that prefix so module paths read as the user wrote them.
    """

    family = "external"

    def __init__(self, net: nn.Module, name: str, deploy: Any, num_classes: int, source: dict[str, Any]) -> None:
        super().__init__(dict(source), num_classes=num_classes, deploy=deploy)
        self.net = net
        self.name = name
        self.source = dict(source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> "ExternalModel":
        """An exported program's module (`ep.module()`) refuses train()/eval(): its mode was fixed at export."""
        self.training = mode
        if not isinstance(self.net, torch.fx.GraphModule):
            self.net.train(mode)
        return self

    def config_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.source, default=str))


# ---- kinds ------------------------------------------------------------------------------------------------------

def source_kind(spec: str | Path | nn.Module) -> str:
    """'module' | 'pt2' | 'factory' | 'checkpoint' | 'zoo' — decided from the spelling, before anything loads."""
    if isinstance(spec, nn.Module):
        return "module"
    text = str(spec)
    if text.endswith(".pt2"):
        return "pt2"
    m = _FACTORY.match(text)
    if m and (m["module"].endswith(".py") or _DOTTED.match(m["module"])):
        return "factory"
    if Path(text).is_file() or "/" in text or "\\" in text or Path(text).suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    return "zoo"


def is_external(spec: str | Path | nn.Module) -> bool:
    """Sources whose deploy settings come from options (.pt2, file.py:factory)."""
    return source_kind(spec) in ("pt2", "factory")


def resolve_source(spec: str | Path | nn.Module, opts: SourceOptions = SourceOptions()) -> Source:
    """Resolve any model source into the pipeline's `Source` (one error line for every bad input)."""
    kind = source_kind(spec)
    if kind in ("pt2", "checkpoint", "module") and opts.weights is not None:
        raise UsageError("--weights applies to file.py:factory sources and zoo names (a .pt2 or a checkpoint "
                         "holds its weights)")
    if kind in ("module", "zoo", "checkpoint") and (opts.mean or opts.std or opts.crop_pct):
        raise UsageError("--mean/--std/--crop-pct apply to .pt2 and file.py:factory sources; "
                         "zoo models and checkpoints carry their own")
    if kind == "module":
        return _from_module(spec, opts)  # type: ignore[arg-type]
    if kind == "pt2":
        return _from_pt2(Path(str(spec)), opts)
    if kind == "factory":
        return _from_factory(str(spec), opts)
    if kind == "checkpoint":
        return _from_checkpoint(Path(str(spec)), opts)
    return _from_zoo(str(spec), opts)


# ---- zoo names and edge-sdk checkpoints (the pipeline's original sources) -------------------------------------------

def _from_module(model: nn.Module, opts: SourceOptions) -> Source:
    if opts.input_size is not None or opts.num_classes is not None:
        raise UsageError("--input-size/--num-classes apply to zoo names and checkpoints, not a model object")
    return Source(model, getattr(model, "name", "") or type(model).__name__.lower())


def _from_checkpoint(path: Path, opts: SourceOptions) -> Source:
    from edge_sdk.models import model_from_checkpoint
    from edge_sdk.models.checkpoint import model_meta, read_checkpoint
    if opts.checkpoint is not None:
        raise UsageError("give either a checkpoint file or MODEL --checkpoint FILE, not both")
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    meta = model_meta(read_checkpoint(path)) or {}
    _check_num_classes(opts.num_classes, meta.get("num_classes"), path)
    size = {"input_size": opts.input_size} if opts.input_size else {}
    return Source(model_from_checkpoint(path, **size), str(meta.get("name")), checkpoint=path)


def _from_zoo(name: str, opts: SourceOptions) -> Source:
    from edge_sdk.models import create_model
    from edge_sdk.models.checkpoint import model_meta, read_checkpoint
    num_classes = opts.num_classes
    if opts.checkpoint is not None:
        meta = model_meta(read_checkpoint(opts.checkpoint)) or {}
        _check_num_classes(num_classes, meta.get("num_classes"), opts.checkpoint)
        num_classes = num_classes or meta.get("num_classes")
    kw: dict[str, Any] = {"input_size": opts.input_size} if opts.input_size else {}
    pretrained = str(opts.weights) if opts.weights is not None else opts.pretrained
    if pretrained not in (None, False):
        kw["pretrained"] = pretrained  # published-layout weights (issue 10's create_model(..., pretrained=))
    m = create_model(name, num_classes=num_classes or 1000, checkpoint=opts.checkpoint, **kw)
    return Source(m, name, checkpoint=opts.checkpoint)


def _check_num_classes(wanted: int | None, stored: int | None, path: Path) -> None:
    if wanted is not None and stored is not None and wanted != stored:
        raise UsageError(f"--num-classes {wanted} disagrees with checkpoint {path} ({stored} classes)")


# ---- .pt2: a saved torch.export program ---------------------------------------------------------------------------

@contextlib.contextmanager
def _no_code_unpickling() -> Iterator[None]:
    """While torch.export.load runs: every torch.load is weights-only and plain pickle / torchbind loads refuse.

    torch.export.load falls back to `torch.load(weights_only=False)` or `pickle.loads` for tensor subclasses,
    opaque constants and legacy archives; a .pt2 from the internet must not execute code through them.
    """
    from torch.export.pt2_archive import _package
    real_load, real_pickle, real_obj = torch.load, _package.pickle, torch._C._pickle_load_obj

    def weights_only_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise EdgeError("the archive holds pickled Python objects (refused: loading them could run code)")

    class _NoPickle:
        loads = staticmethod(refuse)
        load = staticmethod(refuse)

    torch.load, _package.pickle, torch._C._pickle_load_obj = weights_only_load, _NoPickle, refuse
    try:
        yield
    finally:
        torch.load, _package.pickle, torch._C._pickle_load_obj = real_load, real_pickle, real_obj


def load_pt2(path: Path) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    """(program, edge-sdk metadata) from a .pt2 file; one EdgeError line when it is not a loadable program."""
    if not path.is_file():
        raise UsageError(f"program not found: {path}")
    if not zipfile.is_zipfile(path):
        raise EdgeError(f"{path} is not a torch.export program (.pt2 files are zip archives from torch.export.save)")
    extra = {PT2_META: ""}
    try:
        with _no_code_unpickling(), _quiet_export_logs():
            ep = torch.export.load(str(path), extra_files=extra)
    except EdgeError as exc:
        raise EdgeError(f"cannot load {path}: {exc}") from exc
    except Exception as exc:  # torch raises many types for foreign or damaged archives
        raise EdgeError(f"{path} is not a loadable torch.export program: {type(exc).__name__}: "
                        f"{_first_line(exc)}") from exc
    if not isinstance(ep, torch.export.ExportedProgram):
        raise EdgeError(f"{path} holds no exported program")
    return ep, _read_meta(extra.get(PT2_META), path)


@contextlib.contextmanager
def _quiet_export_logs() -> Iterator[None]:
    """torch.export.load logs a warning with a traceback before it raises on a foreign zip; the error line says it."""
    import logging
    log = logging.getLogger("torch.export")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


def _read_meta(text: Any, path: Path) -> dict[str, Any]:
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise EdgeError(f"{path}: its {PT2_META} is not valid JSON: {exc}") from None
    return meta if isinstance(meta, dict) else {}


def pt2_input_shape(ep: torch.export.ExportedProgram, path: Path) -> tuple[int, ...]:
    """The single image input's static shape, from the saved example input (else the placeholder's metadata)."""
    args = (ep.example_inputs or ((), {}))[0]
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors:
        user = set(ep.graph_signature.user_inputs)
        tensors = [n.meta["val"] for n in ep.graph.nodes if n.op == "placeholder" and n.name in user
                   and isinstance(n.meta.get("val"), torch.Tensor)]
    if len(tensors) != 1:
        raise UsageError(f"{path} takes {len(tensors)} tensor inputs; edge-sdk converts image classifiers with "
                         "one (1, 3, H, W) input")
    try:
        shape = tuple(int(d) for d in tensors[0].shape)
    except TypeError:
        raise UsageError(f"{path} was exported with dynamic shapes; export it with a static (1, 3, H, W) "
                         "example input") from None
    if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3]:
        raise UsageError(f"{path} takes an input of shape {list(shape)}; edge-sdk needs (1, 3, S, S) "
                         "(RGB, square crop)")
    return shape


def _from_pt2(path: Path, opts: SourceOptions) -> Source:
    ep, meta = load_pt2(path)
    shape = pt2_input_shape(ep, path)
    if opts.input_size is not None and opts.input_size != shape[2]:
        raise UsageError(f"--input-size {opts.input_size} differs from the program's example input ({shape[2]}); "
                         "a .pt2 is fixed to the size it was exported with")
    net = ep.module()
    deploy_meta = meta.get("deploy") or {}
    name = str(meta.get("name") or path.stem)
    source = {"kind": "pt2", "path": str(path), **({"rewrites": meta["rewrites"]} if meta.get("rewrites") else {}),
              **({"from": meta["source"]} if meta.get("source") else {})}
    return _wrap(net, name, shape[2], opts, deploy_meta, source)


# ---- user code: file.py:factory / package.module:factory -----------------------------------------------------------

def _import_user_module(module: str) -> Any:
    """Import a file or dotted module. This RUNS the user's code (documented): errors become one line."""
    if module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise UsageError(f"model file not found: {path}")
        mod_name = f"edge_sdk_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import {path} as Python code")
        mod = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # so the file can import its siblings
        try:
            sys.modules[mod_name] = mod
            spec.loader.exec_module(mod)
        except (Exception, SystemExit) as exc:
            sys.modules.pop(mod_name, None)
            raise EdgeError(f"importing {path} failed: {type(exc).__name__}: {_first_line(exc)}") from exc
        finally:
            sys.path.remove(str(path.resolve().parent))
        return mod
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import module '{module}': {exc}") from None
    except (Exception, SystemExit) as exc:
        raise EdgeError(f"importing {module} failed: {type(exc).__name__}: {_first_line(exc)}") from exc


def _call_factory(spec: str, opts: SourceOptions) -> nn.Module:
    m = _FACTORY.match(spec)
    assert m is not None
    mod = _import_user_module(m["module"])
    factory = getattr(mod, m["attr"], None)
    if factory is None or not callable(factory):
        from edge_sdk.errors import did_you_mean
        names = [k for k, v in vars(mod).items() if callable(v) and not k.startswith("_")]
        raise UsageError(f"{m['module']} has no callable '{m['attr']}'{did_you_mean(m['attr'], names)}")
    kwargs = {"num_classes": opts.num_classes} if opts.num_classes and _accepts(factory, "num_classes") else {}
    try:
        model = factory(**kwargs)
    except (Exception, SystemExit) as exc:
        raise EdgeError(f"{spec} raised {type(exc).__name__}: {_first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise EdgeError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _from_factory(spec: str, opts: SourceOptions) -> Source:
    net = _call_factory(spec, opts)
    if opts.weights is not None:
        load_state(net, opts.weights)
    net.eval()
    cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None) or {}
    size = opts.input_size or _timm_size(cfg)
    source = {"kind": "factory", "spec": spec, **({"weights": str(opts.weights)} if opts.weights else {})}
    name = _FACTORY.match(spec)["attr"]  # type: ignore[index]
    return _wrap(net, name, size, opts, _timm_deploy(cfg), source)


def _timm_size(cfg: dict[str, Any]) -> int | None:
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    return int(size[-1]) if size and len(size) == 3 and size[1] == size[2] else None


def _timm_deploy(cfg: dict[str, Any]) -> dict[str, Any]:
    """timm models carry their eval preprocessing (`pretrained_cfg`): use it as the default deploy settings."""
    if not isinstance(cfg, dict):
        return {}
    return {k: cfg[k] for k in ("mean", "std", "crop_pct") if cfg.get(k) is not None}


# ---- weights ---------------------------------------------------------------------------------------------------

def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a weights-only torch file (never unpickles code)."""
    if not path.is_file():
        raise UsageError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdgeError(f"cannot read weights {path}: {type(exc).__name__}: {_first_line(exc)}") from exc
    from edge_sdk.models.checkpoint import state_dict_of
    if not isinstance(obj, dict):
        raise EdgeError(f"weights file {path} does not hold a state dict")
    return state_dict_of(obj)


def load_state(model: nn.Module, path: Path) -> None:
    """Load weights; missing/unexpected keys or shapes mean they belong to another model (one line)."""
    state = read_state(Path(path))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or shapes:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", extra), ("shape", shapes)) if keys)
        raise UsageError(f"weights {path} do not fit the model ({detail})")
    model.load_state_dict(state)


# ---- deploy settings for sources without them ---------------------------------------------------------------------

def _wrap(net: nn.Module, name: str, size: int | None, opts: SourceOptions, defaults: dict[str, Any],
          source: dict[str, Any]) -> Source:
    """ExternalModel with a DeployConfig from options (> the file's own metadata > timm's cfg); one error line
    naming every missing setting."""
    mean = opts.mean or _triple(defaults.get("mean"))
    std = opts.std or _triple(defaults.get("std"))
    missing = [flag for flag, v in (("--input-size", size), ("--mean", mean), ("--std", std)) if v is None]
    if missing and opts.require_deploy:
        raise UsageError(f"{source.get('spec') or source.get('path')} carries no deploy settings; give "
                         f"{', '.join(missing)} (e.g. --input-size 224 --mean 0.485,0.456,0.406 "
                         "--std 0.229,0.224,0.225)")
    if size is None:
        raise UsageError(f"{source.get('spec') or source.get('path')}: give --input-size")
    if std is not None and any(s <= 0 for s in std):
        raise UsageError(f"--std values must be > 0, got {list(std)}")
    labels = opts.labels or (tuple(defaults["labels"]) if defaults.get("labels") else None)
    deploy = DeployConfig(input_size=int(size), mean=mean or (0.485, 0.456, 0.406), std=std or (0.229, 0.224, 0.225),
                          crop_pct=float(opts.crop_pct or defaults.get("crop_pct") or 0.875), labels=labels)
    num_classes = _num_classes(net, int(size), opts, labels, source)
    source = {**source, "deploy_given": not missing}
    return Source(ExternalModel(net, name, deploy, num_classes, source), name)


def _triple(v: Any) -> tuple[float, float, float] | None:
    if v is None:
        return None
    t = tuple(float(x) for x in v)
    return t if len(t) == 3 else None  # type: ignore[return-value]


def _num_classes(net: nn.Module, size: int, opts: SourceOptions, labels: tuple[str, ...] | None,
                 source: dict[str, Any]) -> int:
    """Read from one forward pass: the model must return (1, classes) logits."""
    where = source.get("spec") or source.get("path")
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, 3, size, size))
    except Exception as exc:
        raise EdgeError(f"{where} fails on a (1, 3, {size}, {size}) input: {type(exc).__name__}: "
                        f"{_first_line(exc)}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EdgeError(f"{where} returns {shape}; edge-sdk needs (1, classes) logits from one tensor output")
    n = int(out.shape[1])
    if opts.num_classes is not None and opts.num_classes != n:
        raise UsageError(f"--num-classes {opts.num_classes} disagrees with the model's output ({n} classes)")
    if labels is not None and len(labels) != n:
        raise UsageError(f"{len(labels)} labels given for a model with {n} classes")
    return n


def parse_triple(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """'0.485,0.456,0.406' -> a 3-tuple (CLI helper for --mean/--std)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise UsageError(f"{flag} takes three comma-separated numbers, e.g. 0.485,0.456,0.406; got {text!r}") from None
    if len(values) != 3:
        raise UsageError(f"{flag} takes three comma-separated numbers (R,G,B); got {text!r}")
    return values  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
