"""CLI command modules; each exports `commands`, a list of click commands (see edge_sdk/cli.py)."""
