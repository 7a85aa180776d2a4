"""Import every family module so its variants register (registry order = this order)."""
from . import mobilevit, mobilevitv2, levit, hybrid  # noqa: F401
