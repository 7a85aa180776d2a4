"""What machine a number was measured on: CPU model, cores, platform and toolchain versions.

A leaf module of its own so that bench, profile and the HTML report can all stamp results without importing each
other (bench -> report_html -> profile -> bench was an import cycle)."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from edge_sdk import doctor


def machine_info() -> dict[str, Any]:
    """CPU model, core count and toolchain versions, so numbers can be compared across machines."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": doctor.toolchain_versions()}
