"""The `edge-sdk` command line: a thin click group; each command lives in `edge_sdk/commands/<name>.py`.

Errors raised as `EdgeError`/`UsageError` become one `error: ...` line and exit code 1/2 — never a traceback.
Set EDGE_SDK_DEBUG=1 to see the traceback of an error.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

import click

from edge_sdk import __version__
from edge_sdk.errors import EdgeError

# Command modules, each exporting `commands: list[click.Command]`. Imported lazily so `--help` stays fast.
COMMAND_MODULES = {
    "models": "models", "info": "models", "doctor": "doctor",
    "convert": "convert", "validate": "validate",
    "predict": "predict", "bench": "bench",
    "data": "data", "train": "train", "eval": "train",
}


# Toolchain loggers that warn at import time about things this project pins or does not use (coremltools: untested
# torch/scikit-learn versions, no Core ML runtime on Linux; torchao: CUDA kernels absent on a CPU build; torch:
# a pytree deprecation), and their FutureWarnings. Kept at ERROR so a command's output is the command's own;
# EDGE_SDK_DEBUG=1 shows them.
NOISY_LOGGERS = ("coremltools", "torchao", "torch.utils._pytree")


def quiet_toolchain_logs() -> None:
    """Called before any toolchain import (env vars are read at import time); a no-op with EDGE_SDK_DEBUG set."""
    if not os.environ.get("EDGE_SDK_DEBUG"):
        # TensorFlow's C++ INFO/WARNING lines (op counts, oneDNN notes) during litert-torch conversion. TF only folds
        # constants there, so turning its oneDNN kernels off (which also silences their notice) changes no result.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        warnings.filterwarnings("ignore", category=FutureWarning)
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


class EdgeGroup(click.Group):
    """Lazily loads command modules and turns EdgeError into a clean exit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(name)
        if module is None:
            return None
        mod = importlib.import_module(f"edge_sdk.commands.{module}")
        return {c.name: c for c in mod.commands}.get(name)

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except EdgeError as exc:
            if os.environ.get("EDGE_SDK_DEBUG"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=EdgeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edge-sdk")
def cli() -> None:
    """Put hybrid CNN/Transformer vision models on phones.

    \b
    Example:
      edge-sdk models
      edge-sdk convert mobilevitv2_050 --target all -o bundles/
      edge-sdk bench bundles/mobilevitv2_050-executorch-fp32 --budget-ms 50
    """


def main() -> None:
    quiet_toolchain_logs()
    cli(prog_name="edge-sdk")


if __name__ == "__main__":
    main()
