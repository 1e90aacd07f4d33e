"""The NumPy backend: the reference. Always present; every other backend may decline a node,
and then its op runs here (or through the op's own reference compute)."""
from . import fused, kernels, random  # noqa: F401  (registers the kernels)
