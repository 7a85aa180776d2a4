"""`edge-sdk doctor`."""
from __future__ import annotations

import sys

import click

from edge_sdk.output import console, print_json, print_table


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor_cmd(as_json: bool) -> None:
    """Check toolchain versions and which targets convert / run on this machine.

    Exits 1 when a required part is missing. Core ML converts everywhere but runs only on macOS.

    \b
    Example:
      edge-sdk doctor --json
    """
    from edge_sdk.doctor import report
    rep = report()
    if as_json:
        print_json(rep)
    else:
        print_table(f"edge-sdk doctor ({rep['platform']}, Python {rep['python']})", ["part", "ok", "version", "detail"],
                    [(c["name"], "yes" if c["ok"] else ("NO" if c["required"] else "no"), c["version"], c["detail"])
                     for c in rep["checks"]])
        console.print("all required parts present" if rep["ok"] else "[red]required parts missing[/red]")
    sys.exit(0 if rep["ok"] else 1)


commands = [doctor_cmd]
