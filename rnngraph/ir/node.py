"""Node: one application of an op to input Values, producing output Values."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .value import Value

if TYPE_CHECKING:
    from .graph import Graph
    from .types import TensorType


class Node:
    __slots__ = ("graph", "op", "inputs", "outputs", "name", "location", "is_gradient",
                 "device")

    def __init__(self, graph: "Graph", op: Any, inputs: list[Value], name: str, location: str):
        self.graph = graph
        self.op = op   # an ops.base.Op (the ir layer does not import ops, not even for types)
        self.inputs = list(inputs)
        self.outputs: list[Value] = []
        self.name = name
        self.location = location
        self.is_gradient = False  # set by autodiff; renderers set gradient nodes apart
        # the placement asked for with rg.device, canonical ("/device:GPU:0"); "" for none
        self.device = ""

    def _add_output(self, type: "TensorType") -> Value:
        value = Value(self, len(self.outputs), type, self.graph._next_value_id())
        self.outputs.append(value)
        return value

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise ValueError(f"node {self.name} has {len(self.outputs)} outputs, not one")
        return self.outputs[0]

    @property
    def type(self) -> str:
        """The op's name ("matmul", "variable", ...): TF1's Operation.type."""
        return self.op.name

    def values(self) -> tuple:
        """The node's outputs (TF1's Operation.values())."""
        return tuple(self.outputs)

    def run(self, feed_dict=None, session=None) -> None:
        """Run this node for its effect in `session` (or the default session): TF1's
        Operation.run(), e.g. `graph.get_operation_by_name("train").run(feed_dict)`."""
        if self.outputs:
            self.outputs[0].run(feed_dict, session)

    def __repr__(self) -> str:
        return f"<Node {self.name} = {self.op.name} ({self.location})>"

    def describe(self) -> str:
        """How error messages name a node: op, scoped name and the user's line that built it."""
        return f"{self.op.name} '{self.name}' (built at {self.location})"
