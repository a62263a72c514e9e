"""Single source of the package version (also used in checkpoint metadata)."""

__version__ = "0.1.0"
