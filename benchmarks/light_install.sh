#!/usr/bin/env bash
# Measure the light install (`pip install edge-sdk`: runtime only, no torch) against the full one (`make env`:
# .[convert,dev]) and show that `edge-sdk predict` on a .tflite bundle imports no torch.
# Usage: benchmarks/light_install.sh BUNDLE IMAGE [FULL_VENV]     (results: benchmarks/results/light_install.md)
set -euo pipefail
BUNDLE=${1:?a .tflite bundle}; IMAGE=${2:?an image}; FULL=${3:-.venv}
WORK=$(mktemp -d /tmp/edge-sdk-light.XXXX)
PYBASE=$("$FULL/bin/python" -c 'import sys; print(sys._base_executable)')
"$PYBASE" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --upgrade pip
"$WORK/venv/bin/pip" install -q "$(pwd)"          # a real, non-editable light install of this checkout
rm -rf build                                       # setuptools' build folder of the step above
site() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
echo "light site-packages: $(du -sh "$(site "$WORK/venv")" | cut -f1)  ($("$WORK/venv/bin/pip" list 2>/dev/null | tail -n +3 | wc -l) distributions)"
echo "full  site-packages: $(du -sh "$(site "$FULL")" | cut -f1)  ($("$FULL/bin/pip" list 2>/dev/null | tail -n +3 | wc -l) distributions)"
echo "largest in the light install (MB):"; du -sm "$(site "$WORK/venv")"/* | sort -rn | head -8
# EDGE_SDK_DEBUG=1 keeps file descriptor 2 open (the CLI points it at /dev/null otherwise), so -X importtime shows
EDGE_SDK_DEBUG=1 "$WORK/venv/bin/python" -X importtime -m edge_sdk.cli predict "$BUNDLE" "$IMAGE" --json \
    2> "$WORK/importtime.txt" > /dev/null
echo "predict: $(grep -c '^import time:' "$WORK/importtime.txt") imports, torch-family imports: \
$(grep -cE '\| *(torch|executorch|coremltools|litert_torch)(\.|$)' "$WORK/importtime.txt" || true)"
"$WORK/venv/bin/python" -c "import torch" 2>&1 | tail -1 || true
echo "importtime log: $WORK/importtime.txt"
