"""Placeholder: variants are being written."""
