"""TFLite "no TRANSPOSE inside the network" for every tiny zoo family (docs/tflite.md, "TRANSPOSE").

All tiny models are converted in ONE litert-torch conversion (a wrapper that runs each of them on the same NHWC
input and adds the logits) to stay fast: the report attributes each TRANSPOSE to its module path, whose first
component is the model's name. Counts are those of the real model graphs; the wrapper adds no TRANSPOSE.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from edge_sdk.models import create_model

# Family -> internal TRANSPOSE count reached. MobileViT v1/v2 keep the data moves of their patch regrouping
# (unfold/fold done as space-to-depth + permutes): 1 TRANSPOSE in, 2 out per MobileViT block whose feature map
# holds more than one patch (layer3, layer4: 3 each); layer5 of the 64x64 tiny models is a single 2x2 patch, where
# the regrouping out is (almost) a pure reshape (v1 1, v2 2). These are real memory permutations
# ([N][C][P] -> [P][N][C] and its inverse, the depth-to-space), not layout round trips; TFLite's DEPTH_TO_SPACE
# could express the second one, but litert-torch cannot emit it without a rank-6 permute (zoo rule 1).
EXPECTED = {"levit_tiny": 0, "cctt_micro": 0, "pbhybrid_micro": 0, "mobilevitv2_tiny": 8, "mobilevit_tiny": 7}


class AllTiny(nn.Module):
    """Every tiny model side by side on one input; logits summed (one output for the converter)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        for name in EXPECTED:
            setattr(self, name, create_model(name, num_classes=10).reparameterize().eval())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(getattr(self, name)(x) for name in EXPECTED)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    from edge_sdk.converters import tflite as T
    from edge_sdk.converters.tflite_report import build_report
    torch.set_num_threads(1)
    model = AllTiny().eval()
    path = Path(tmp_path_factory.mktemp("tfree")) / "all.tflite"
    path.write_bytes(T.convert_fp32(model, torch.randn(1, 3, 64, 64), nhwc=True))
    return build_report(path)


def _per_family(report: dict) -> Counter:
    counts: Counter = Counter({name: 0 for name in EXPECTED})
    for t in report["transposes"]:
        assert t["where"] == "internal", t  # NHWC input: no I/O TRANSPOSE at all
        family = t["scope"].split(".")[0]
        assert family in EXPECTED, f"TRANSPOSE outside any model: {t}"
        counts[family] += 1
    return counts


@pytest.mark.parametrize("name", list(EXPECTED))
def test_internal_transpose_count(report, name):
    counts = _per_family(report)
    assert counts[name] == EXPECTED[name], {t["scope"]: t["perm"] for t in report["transposes"]
                                            if t["scope"].startswith(name + ".")}


def test_mobilevit_transposes_are_only_the_patch_regrouping(report):
    """What remains in MobileViT v1/v2 sits in PatchMixer (patch regrouping), never inside a transformer layer."""
    for t in report["transposes"]:
        assert ".mixer" in t["scope"] and ".layers." not in t["scope"], t
