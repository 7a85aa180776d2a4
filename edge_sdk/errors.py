"""Errors that the CLI turns into one clear line and an exit code (never a traceback).

`UsageError` (exit 2) is the caller's mistake: an unknown name, a bad option, an unsupported combination.
`EdgeError` (exit 1) is a failure: a corrupt file, a toolchain error, a missed threshold.
"""
from __future__ import annotations

import contextlib
import difflib
from typing import Iterable, Iterator


class EdgeError(Exception):
    """A failure the user can act on; the CLI prints `error: <message>` and exits 1."""

    exit_code = 1


class UsageError(EdgeError):
    """Bad input from the caller; the CLI exits 2."""

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for the closest choices, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def unknown(kind: str, word: str, choices: Iterable[str]) -> UsageError:
    """A UsageError for an unknown name, with suggestions."""
    choices = sorted(choices)
    hint = did_you_mean(word, choices)
    if not hint:
        hint = f"; known: {', '.join(choices[:12])}{' ...' if len(choices) > 12 else ''}"
    return UsageError(f"unknown {kind} '{word}'{hint}")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, cut to `limit` characters (toolchain messages can be pages long)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:limit]


@contextlib.contextmanager
def toolchain_errors(what: str) -> Iterator[None]:
    """Turn any exception a toolchain raises inside the block into one `EdgeError("<what> failed: ...")` line.

    Why one wrapper: torch.export, ExecuTorch, coremltools, litert-torch and ai-edge-quantizer raise dozens of
    exception types with multi-page messages; the user needs one line saying which step failed and why. The
    original exception is chained (EDGE_SDK_DEBUG=1 shows its traceback). EdgeError passes through unchanged.
    """
    try:
        yield
    except EdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - toolchains raise anything
        raise EdgeError(f"{what} failed: {first_line(exc)}") from exc
