"""The session's variable values, initialised from seeded initializers on first use."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ops.initializers import variable_rng


class VariableStore:
    def __init__(self, graph: Graph, device, seed: int):
        self.graph = graph.root
        self.device = device
        self.seed = seed
        self.values: dict[str, object] = {}

    def _node(self, name: str):
        node = self.graph.get_node(name)
        if node.op.name != "variable":
            raise KeyError(f"{name!r} is not a variable")
        return node

    def initialize(self, name: str) -> None:
        op = self._node(name).op
        value = op.initializer(op.shape, np.dtype(op.dtype), variable_rng(self.seed, name))
        self.values[name] = self.device.asarray(np.asarray(value, dtype=op.dtype))

    def initialize_all(self) -> None:
        for v in self.graph.collections.get("variables", []):
            self.initialize(v.node.name)

    def read(self, name: str):
        try:
            return self.values[name]
        except KeyError:
            self.initialize(name)  # first use: draw from the seeded initializer
            return self.values[name]

    def write(self, name: str, value) -> None:
        self.values[name] = value

    def load(self, name: str, value) -> None:
        """Set a variable from a host array, checking shape and dtype (e.g. imported weights)."""
        op = self._node(name).op
        arr = np.asarray(value)
        if arr.shape != tuple(op.shape):
            raise ValueError(f"variable {name!r} has shape {tuple(op.shape)}, got {arr.shape}")
        if arr.dtype.kind not in "fiub" or (arr.dtype.kind == "f" and np.dtype(op.dtype).kind != "f"):
            raise TypeError(f"variable {name!r} is {op.dtype}, got {arr.dtype}")
        self.values[name] = self.device.asarray(arr.astype(op.dtype))
