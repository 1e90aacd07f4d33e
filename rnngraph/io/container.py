"""Reading the zip container of a saved file with every size known before anything is inflated.

The checking reader itself lives in the leaf module `rnngraph.safezip` (checkpoints, in
train/, use it too); this module says which members a saved graph may hold:

- `graph.json` (required; at most `LoadLimits.max_graph_bytes` decompressed),
  `graph.sha256` (at most 4 KiB), and `constants/<n>.npy`, `variables/<n>.npy`;

and `open_archive(path, limits)` opens a file with those rules. It reads the zip's central
directory only, and refuses (with `InvalidFileError` naming the member) before decompressing
a byte: a member name that appears twice, an encrypted member, a compression method other
than stored or deflated, a name that is not one rnngraph writes; a member larger than its cap
or, deflated and over `ratio_floor_bytes`, more than `max_ratio` times its compressed size;
members that together exceed `LoadLimits.total_bytes(file size)`. Then each `.npy` header
must declare exactly the bytes its member holds. Arrays are read only when asked for
(`Archive.array`), straight into a buffer of the declared size.
"""
from __future__ import annotations

import re

from ..safezip import Archive, Layout, LoadLimits, MemberError
from ..safezip import open_archive as _open_checked

__all__ = ["GRAPH_ENTRY", "HASH_ENTRY", "LAYOUT", "Archive", "LoadLimits", "MemberError",
           "open_archive"]

GRAPH_ENTRY = "graph.json"
HASH_ENTRY = "graph.sha256"

LAYOUT = Layout(
    required=GRAPH_ENTRY,
    missing=f"no {GRAPH_ENTRY} entry: not a file rnngraph wrote",
    names=re.compile(r"graph\.json|graph\.sha256|(constants|variables)/(0|[1-9][0-9]{0,8})\.npy"),
    unknown="is not a member rnngraph writes (graph.json, graph.sha256, constants/<n>.npy, "
            "variables/<n>.npy)",
    caps={GRAPH_ENTRY: "max_graph_bytes", HASH_ENTRY: 4096},
)


def open_archive(path: str, limits: LoadLimits) -> Archive:
    """Open the saved file `path` and check it against `limits` (see the module docstring)."""
    return _open_checked(path, limits, LAYOUT)
