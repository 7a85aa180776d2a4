"""Placeholder: being written."""
commands = []
