"""The session's variable values, initialised from seeded initializers on first use.

A run's writes are transactional: between `begin()` and `end()` (the Session calls them around
each run) `write` and `initialize_all` go to a pending table of the calling thread, `read` (what
kernels call) sees that table first, and `end(..., commit=True)` stores the pending values all
at once when the run succeeded; otherwise they are dropped, and every variable keeps the value
it had before the run. A table left behind by an interrupt that lands between the two calls is
harmless: `committed` (what users read) never looks at it, and the next `begin` replaces it.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..ir.graph import Graph
from ..ops.initializers import variable_rng


class VariableStore:
    def __init__(self, graph: Graph, device, seed: int):
        self.graph = graph.root
        self.device = device
        self.seed = seed
        self.values: dict[str, object] = {}   # the committed values
        self._run = threading.local()          # .pending: this thread's run's writes, or None

    def _node(self, name: str):
        node = self.graph.get_node(name)
        if node.op.name != "variable":
            raise KeyError(f"{name!r} is not a variable")
        return node

    def _initial(self, name: str):
        op = self._node(name).op
        value = op.initializer(op.shape, np.dtype(op.dtype), variable_rng(self.seed, name))
        return self.device.asarray(np.asarray(value, dtype=op.dtype))

    def initialize(self, name: str) -> None:
        """Set `name` to its seeded initial value (pending during a run, as `write`)."""
        self.write(name, self._initial(name))

    def initialize_all(self) -> None:
        """Initialize every variable of the graph (pending during a run, as `write`)."""
        for v in self.graph.collections.get("variables", []):
            self.initialize(v.node.name)

    def read(self, name: str):
        """The value of `name` as the running kernels see it: this thread's pending write if its
        run made one, else the committed value."""
        pending = getattr(self._run, "pending", None)
        if pending is not None and name in pending:
            return pending[name]
        return self.committed(name)

    def committed(self, name: str):
        """The stored value of `name`, outside any run; a variable never set gets its seeded
        initial value (the same in any session with this seed, so it is stored at once, in or
        out of a run)."""
        try:
            return self.values[name]
        except KeyError:
            return self.values.setdefault(name, self._initial(name))

    def write(self, name: str, value) -> None:
        """Set `name`; during this thread's run (begin .. end) the write is pending."""
        pending = getattr(self._run, "pending", None)
        if pending is not None:
            pending[name] = value
        else:
            self.values[name] = value

    def begin(self) -> dict:
        """Start this thread's run: from now on its writes are pending (in the table returned,
        for `end`). One run per thread at a time: a table still open is replaced."""
        self._run.pending = pending = {}
        return pending

    def end(self, pending: dict, commit: bool) -> None:
        """Finish the run that `begin` returned `pending` for: store all its writes in one step
        (other threads, and a signal arriving, see all of them or none) if `commit`, else
        drop them."""
        if commit:
            self.values.update(pending)
        if getattr(self._run, "pending", None) is pending:
            self._run.pending = None

    @contextlib.contextmanager
    def transaction(self):
        """begin() and end() around a block: its writes are stored when it exits normally and
        dropped when it raises (KeyboardInterrupt included)."""
        pending = self.begin()
        try:
            yield pending
        except BaseException:
            self.end(pending, commit=False)
            raise
        self.end(pending, commit=True)

    def load(self, name: str, value) -> None:
        """Set a variable from a host array, checking shape and dtype (e.g. imported weights)."""
        op = self._node(name).op
        arr = np.asarray(value)
        if arr.shape != tuple(op.shape):
            raise ValueError(f"variable {name!r} has shape {tuple(op.shape)}, got {arr.shape}")
        if arr.dtype.kind not in "fiub" or (arr.dtype.kind == "f" and np.dtype(op.dtype).kind != "f"):
            raise TypeError(f"variable {name!r} is {op.dtype}, got {arr.dtype}")
        self.values[name] = self.device.asarray(arr.astype(op.dtype))
