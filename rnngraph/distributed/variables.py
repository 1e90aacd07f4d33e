"""broadcast_variables: start every rank from rank root's variable values."""
from __future__ import annotations

import hashlib

import numpy as np

from ..errors import DistributedError
from .world import current


def broadcast_variables(session, root: int = 0) -> int:
    """Overwrite every variable of `session` (weights, optimizer slots, step counters) with
    rank `root`'s values; call it on every rank after building the graph and before training
    (or after rank root restored a checkpoint). One broadcast per dtype. Returns how many
    variables it set. A collective: every rank must call it (DistributedError after the
    timeout otherwise)."""
    comm = current()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) \
            or not 0 <= root < comm.size:
        raise ValueError(f"root must be a rank in 0..{comm.size - 1}, got {root!r}")
    store = session.variables
    names = [v.node.name for v in session.graph.collections.get("variables", [])]
    if comm.size == 1 or not names:
        return len(names)
    values = {name: _to_host(store.committed(name)) for name in names}
    _check_same_variables(comm, [(n, values[n].shape, values[n].dtype.str) for n in names])
    by_dtype: dict = {}
    for name in names:   # graph order: the same on every rank that built the same graph
        by_dtype.setdefault(values[name].dtype.str, []).append(name)
    for key in sorted(by_dtype):
        group = by_dtype[key]
        buffer = np.concatenate([values[n].reshape(-1) for n in group])
        comm.broadcast(buffer, root)
        start = 0
        for name in group:
            size = values[name].size
            store.load(name, buffer[start:start + size].reshape(values[name].shape))
            start += size
    return len(names)


def _to_host(array) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)   # a CuPy array
    return np.asarray(get() if callable(get) else array)


def _check_same_variables(comm, described: list) -> None:
    """Every rank must broadcast the same variables (names, shapes, dtypes, in one order):
    compare a hash of the list before any buffer moves."""
    text = "\n".join(f"{name} {shape} {dtype}" for name, shape, dtype in described)
    fp = hashlib.sha256(text.encode()).hexdigest()[:32]
    prints = [p.decode("ascii", "replace") for p in comm.allgather_bytes(fp.encode("ascii"))]
    if len(set(prints)) > 1:
        by_rank = ", ".join(f"rank {r}: {p[:12]}" for r, p in enumerate(prints))
        raise DistributedError(
            f"broadcast_variables: the ranks built different graphs: their variables (names, "
            f"shapes, dtypes) differ (fingerprints {by_rank}); every rank must build the same "
            f"model and optimizer")
