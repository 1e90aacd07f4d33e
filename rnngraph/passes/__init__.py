"""(see the package docstring of rnngraph)."""
