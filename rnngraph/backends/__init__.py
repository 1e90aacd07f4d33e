"""How nodes run on devices: kernel factories registered per (op, backend) in rnngraph.kernels.

numpy/ is the reference and always loads. cupy/ (GPU) and numba/ (the optional accelerated CPU
backend) load when their folder is present; neither imports its third-party package here, so
both load without it and decline at compile time instead. Delete either folder and everything
still works.
"""
from __future__ import annotations

import importlib

from . import numpy  # noqa: F401  (the reference backend)

LOADED = ["numpy"]
for _name in ("numba", "cupy"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:   # the folder was removed: run without it
        if _exc.name != f"{__name__}.{_name}":
            raise
    else:
        LOADED.append(_name)
