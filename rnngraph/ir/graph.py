"""Graph: nodes in creation (= topological) order, scoped unique names, a default-graph stack.

A loop node's body is a Graph whose `parent` is the graph holding the loop. Values of an
enclosing graph used inside a body are *captured*: they become the body's loop-invariant params.
"""
from __future__ import annotations

import contextlib
import itertools
import re
import threading
from typing import Callable, Iterator

from .device import merge as device_merge
from .node import Node
from .types import TensorType
from .value import Value

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]*$")


class Graph:
    # the op of a body parameter node (ops/sources.py's Param, installed by the ops layer)
    param_op = None
    # fn(graph, control_inputs) -> context manager (ops/misc.py installs it)
    control_block = None

    def __init__(self, parent: "Graph | None" = None, name: str = "graph"):
        self.parent = parent
        self.name = name
        self.nodes: list[Node] = []
        self._by_name: dict[str, Node] = {}
        self._name_counts: dict[str, int] = {}
        self._scope: list[str] = []
        self._ids = parent._ids if parent is not None else itertools.count()
        self.version = 0  # bumped on every change; compiled programs check it
        # body graphs: ordered params by role, and outer value -> invariant param
        self.params: dict[str, list[Value]] = {}
        self.captures: dict[Value, Value] = {}
        self.capture_fn: Callable[[Value], Value] | None = None
        self.collections: dict[str, list] = {}
        # values that must survive rewrites, by role: a loop body's results (carried, output,
        # residual, cond); on a compile-time clone, the values the pass pipeline must keep
        self.results: dict[str, list[Value]] = {}
        # rg.device scopes open on this (root) graph: canonical device strings, innermost last
        self._devices: list[str] = []
        # rg.control_dependencies blocks open on this graph, innermost last (ops/misc.py)
        self.control_frames: list = []

    # --- structure ----------------------------------------------------------------------
    @property
    def root(self) -> "Graph":
        g = self
        while g.parent is not None:
            g = g.parent
        return g

    def is_ancestor_of(self, other: "Graph") -> bool:
        g = other.parent
        while g is not None:
            if g is self:
                return True
            g = g.parent
        return False

    def _next_value_id(self) -> int:
        return next(self._ids)

    def get_node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no node named {name!r} in this graph") from None

    def get_value(self, name: str) -> Value:
        """Look a value up by 'node_name:index' (or the node name for its first output)."""
        node_name, _, idx = name.rpartition(":") if ":" in name else (name, "", "0")
        return self.get_node(node_name).outputs[int(idx)]

    def get_tensor_by_name(self, name: str) -> Value:
        """The tensor named "<node name>:<output index>" (tf.Graph.get_tensor_by_name): a
        ValueError for a name without the index, a KeyError naming what is missing."""
        if not isinstance(name, str):
            raise TypeError(f"get_tensor_by_name: the name must be a str, got "
                            f"{type(name).__name__}: {name!r}")
        node_name, sep, idx = name.rpartition(":")
        if not sep or not idx.isdigit() or not node_name:
            raise ValueError(f"The name {name!r} looks like an (invalid) Operation name, not a "
                             f"Tensor. Tensor names must be of the form "
                             f"\"<op_name>:<output_index>\".")
        node = self._by_name.get(node_name)
        if node is None:
            raise KeyError(f"The name {name!r} refers to a Tensor which does not exist. The "
                           f"operation, {node_name!r}, does not exist in the graph.")
        if int(idx) >= len(node.outputs):
            raise KeyError(f"The name {name!r} refers to a Tensor which does not exist. The "
                           f"operation, {node_name!r}, exists but only has "
                           f"{len(node.outputs)} outputs.")
        return node.outputs[int(idx)]

    def get_operation_by_name(self, name: str) -> Node:
        """The node named `name` (tf.Graph.get_operation_by_name; its `.outputs`, `.run()`):
        a ValueError for a tensor name ("x:0"), a KeyError for a name the graph lacks."""
        if not isinstance(name, str):
            raise TypeError(f"get_operation_by_name: the name must be a str, got "
                            f"{type(name).__name__}: {name!r}")
        if ":" in name:
            raise ValueError(f"Name {name!r} appears to refer to a Tensor, not a Operation.")
        node = self._by_name.get(name)
        if node is None:
            raise KeyError(f"The name {name!r} refers to an Operation not in the graph.")
        return node

    def get_operations(self) -> list[Node]:
        """The nodes of this graph in creation order (tf.Graph.get_operations)."""
        return list(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def total_nodes(self) -> int:
        """Nodes here plus inside every loop body, recursively."""
        return sum(1 + sum(b.total_nodes() for b in n.op.subgraphs()) for n in self.nodes)

    # --- naming -------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        if not _NAME_RE.match(base):
            raise ValueError(f"invalid node name {base!r}")
        full = "/".join(self._scope + [base]) if base else "/".join(self._scope)
        n = self._name_counts.get(full, 0)
        self._name_counts[full] = n + 1
        name = full if n == 0 else f"{full}_{n}"
        while name in self._by_name:  # user named something 'x_1' explicitly
            n += 1
            self._name_counts[full] = n + 1
            name = f"{full}_{n}"
        return name

    @contextlib.contextmanager
    def name_scope(self, name: str | None):
        """Nest node names under `name` (like tf.name_scope); None or '' adds nothing."""
        if not name:
            yield self.current_scope()
            return
        name = name.rstrip("/")
        self._scope.append(name)
        try:
            yield self.current_scope()
        finally:
            self._scope.pop()

    @contextlib.contextmanager
    def absolute_scope(self, path: str):
        """Build under exactly `path` (not nested in the current scope)."""
        saved, self._scope = self._scope, [p for p in path.split("/") if p]
        try:
            yield path
        finally:
            self._scope = saved

    def current_scope(self) -> str:
        return "/".join(self._scope)

    @contextlib.contextmanager
    def device_scope(self, device: str | None):
        """Nodes built inside (in this graph and its loop bodies) take `device`, merged into
        the enclosing scope's (TF1's tf.device: inner fields win); None clears the placement."""
        root = self.root
        spec = "" if device is None else device_merge(root.current_device(), device)
        root._devices.append(spec)
        try:
            yield spec
        finally:
            root._devices.pop()

    def control_dependencies(self, control_inputs):
        """Nodes built in this graph inside the block run after `control_inputs`
        (tf.Graph.control_dependencies; rg.control_dependencies is this on the default graph)."""
        return Graph.control_block(self, control_inputs)

    def current_device(self) -> str:
        """The canonical device string nodes built now take ("" when none is asked for)."""
        devices = self.root._devices
        return devices[-1] if devices else ""

    # --- building -----------------------------------------------------------------------
    def add_node(self, op, inputs: list[Value], out_types: list[TensorType], name: str | None,
                 location: str) -> Node:
        node = Node(self, op, inputs, self.unique_name(name or op.default_name()), location)
        node.device = self.current_device()
        for t in out_types:
            node._add_output(t)
        self.nodes.append(node)
        self._by_name[node.name] = node
        self.version += 1
        return node

    def add_param(self, role: str, type: TensorType, name: str, location: str = "") -> Value:
        """A body-graph parameter (step index, carried state, invariant or sequence slice)."""
        node = self.add_node(Graph.param_op(role), [], [type], name, location)
        self.params.setdefault(role, []).append(node.outputs[0])
        return node.outputs[0]

    def capture(self, value: Value) -> Value:
        """The value standing for `value` (from another graph) inside this graph."""
        if value.graph is self:
            return value
        if self.capture_fn is not None:
            return self.capture_fn(value)
        return self.capture_outer(value)

    def capture_outer(self, value: Value) -> Value:
        """Capture a value of an enclosing graph as a loop-invariant param (memoised).

        Also a value of a graph that an enclosing graph's `capture_fn` maps into that graph:
        a loop nested in a loop body differentiates into a backward body inside the outer
        loop's backward body, and reads its own ports, values of the outer *forward* body,
        through the outer backward body's capture function (saved, recomputed or a port).
        """
        if value.graph.is_ancestor_of(self) or self._mapped_above():
            outer = self.parent.capture(value)
            if outer not in self.captures:
                self.captures[outer] = self.add_param("invariant", outer.type,
                                                      "capture/" + _tail(outer.node.name))
            return self.captures[outer]
        raise ValueError(f"{value!r} belongs to another graph; values of different graphs "
                         "cannot be combined (build them in one graph, or use as_default())")

    def _mapped_above(self) -> bool:
        """Has an enclosing graph a capture function (which may map values of other graphs)?"""
        g = self.parent
        while g is not None:
            if g.capture_fn is not None:
                return True
            g = g.parent
        return False

    def remove_nodes(self, doomed: set[Node]) -> None:
        """Drop nodes nobody references (autodiff cleans up the grads it did not need)."""
        self.nodes = [n for n in self.nodes if n not in doomed]
        for n in doomed:
            self._by_name.pop(n.name, None)
        self.version += 1

    # --- default graph ------------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self):
        stack = _default_stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    def __repr__(self) -> str:
        kind = "body" if self.parent is not None else "graph"
        return f"<{kind} {self.name!r}: {len(self.nodes)} nodes>"

    def __str__(self) -> str:
        from .printer import format_graph   # cycle: ir/printer.py imports this module
        return format_graph(self)


def _tail(name: str) -> str:
    return name.rsplit("/", 1)[-1]


_local = threading.local()
_global_default = Graph()


def _default_stack() -> list[Graph]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_default_graph() -> Graph:
    stack = _default_stack()
    return stack[-1] if stack else _global_default


def reset_default_graph() -> Graph:
    """Replace the global default graph with a fresh one (like tf.reset_default_graph)."""
    global _global_default
    if _default_stack():
        raise RuntimeError("reset_default_graph() inside a `with graph.as_default()` block")
    _global_default = Graph()
    return _global_default
