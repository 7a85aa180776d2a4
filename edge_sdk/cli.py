"""The `edge-sdk` command line: a thin click group; each command lives in `edge_sdk/commands/<name>.py`.

Errors raised as `EdgeError`/`UsageError` become one `error: ...` line and exit code 1/2 — never a traceback.
Set EDGE_SDK_DEBUG=1 to see the traceback of an error.
"""
from __future__ import annotations

import importlib
import io
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
    "serve": "serve", "app": "app", "demo": "demo",  # issue 13: camera apps
    "profile": "profile",  # issue 12: per-op profiler
    "lint": "lint",  # issue 11: bring your own model
    "quickstart": "quickstart",  # issue 9: what `make demo` runs
}


# Toolchain loggers that warn at import time about things this project pins or does not use (coremltools: untested
# torch/scikit-learn versions, no Core ML runtime on Linux; torchao: CUDA kernels absent on a CPU build; torch:
# a pytree deprecation), and their FutureWarnings. Kept at ERROR so a command's output is the command's own;
# EDGE_SDK_DEBUG=1 shows them.
NOISY_LOGGERS = ("coremltools", "torchao", "torch.utils._pytree")


def silence_native_output() -> None:
    """Point file descriptors 1 and 2 at /dev/null and give Python's sys.stdout/sys.stderr private copies of them.

    Why: native libraries write straight to the descriptors (ExecuTorch's cpuinfo/threadpool lines, LiteRT's
    "INFO: Created TensorFlow Lite XNNPACK delegate", libpng, OpenCV warnings), so an `error:` line was never alone
    on the terminal and `--json` output could be corrupted. Everything Python prints (results, progress, errors)
    still reaches the terminal. A no-op with EDGE_SDK_DEBUG=1, which keeps every native line.
    """
    if os.environ.get("EDGE_SDK_DEBUG"):
        return
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        try:
            stream.flush()
            if stream.fileno() != fd:
                continue
            saved = os.dup(fd)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            continue  # no real descriptor (embedded, captured by a test runner): nothing native to silence
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        copy = io.TextIOWrapper(io.FileIO(saved, "w"), encoding=stream.encoding, errors=stream.errors,
                                line_buffering=bool(getattr(stream, "line_buffering", False)) or name == "stderr")
        setattr(sys, name, copy)


def quiet_toolchain_logs() -> None:
    """Called before any toolchain import (env vars are read at import time); a no-op with EDGE_SDK_DEBUG set."""
    et_log = logging.getLogger("edge_sdk.executorch")  # ExecuTorch's C++ log lines (edge_sdk.runtime.engines)
    if os.environ.get("EDGE_SDK_DEBUG"):
        et_log.setLevel(logging.DEBUG)
        et_log.addHandler(logging.StreamHandler())
        et_log.propagate = False
        return
    et_log.addHandler(logging.NullHandler())
    et_log.propagate = False  # the error they explain is already the `error:` line
    if not os.environ.get("EDGE_SDK_DEBUG"):
        # TensorFlow's C++ INFO/WARNING lines (op counts, oneDNN notes) during litert-torch conversion. TF only folds
        # constants there, so turning its oneDNN kernels off (which also silences their notice) changes no result.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        warnings.simplefilter("ignore")  # torch/toolchain warnings are not the command's output
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

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # noqa: ANN002, ANN003, ANN201
        """Click's standalone mode, except that a usage error is ONE `error:` line, then the usage and the help
        hint (exit 2), like every other error of this CLI."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            if exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
                if exc.ctx.command.get_help_option(exc.ctx) is not None:
                    click.echo(f"Try '{exc.ctx.command_path} {exc.ctx.help_option_names[0]}' for help.", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if type(rv) is int else 0)

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
    silence_native_output()
    cli(prog_name="edge-sdk")


if __name__ == "__main__":
    main()
