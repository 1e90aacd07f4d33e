"""The package version (a leaf: saved files record it)."""
__version__ = "0.1.0"
