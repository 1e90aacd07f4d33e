"""The ONNX graph under construction: nodes, initializers, unique names, and the map from
rnngraph Values to the ONNX names that hold them.

An `Emitter` writes one ONNX graph (the model's main graph, or a Loop/Scan body). Bodies look
up values they do not define in the emitter of the enclosing graph, which ONNX allows (a
subgraph may read any name of the graphs around it). All names come from one `Names` per
model, so no two values anywhere in the model share a name.

The `onnx` module is handed in by the driver (export.py), which imports it lazily: nothing
here imports onnx, so rnngraph imports without it.
"""
from __future__ import annotations

import re

import numpy as np

from .inference import EMPTY

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
_CLEAN = re.compile(r"[^A-Za-z0-9_./:\-]")


class Names:
    """Model-wide unique names, made readable from rnngraph's scoped node names."""

    def __init__(self):
        self.taken: set = set()

    def fresh(self, base: str) -> str:
        base = _CLEAN.sub("_", base) or "v"
        name, k = base, 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name

    def reserve(self, name: str) -> str:
        """Take `name` exactly (a user's input or output name); ValueError if it is taken."""
        if name in self.taken:
            raise ValueError(f"the ONNX name {name!r} is used twice; give the inputs and "
                             "outputs distinct names")
        self.taken.add(name)
        return name


class Emitter:
    """One ONNX graph being written. `outer`: the emitter of the enclosing graph (bodies)."""

    def __init__(self, onnx, opset: int, names: Names, outer: "Emitter | None" = None,
                 nodes: list | None = None, session=None, route: str = "auto", view=None):
        self.onnx = onnx
        self.helper = onnx.helper
        self.opset = opset
        self.names = names
        self.outer = outer
        self.nodes = [] if nodes is None else nodes
        self.initializers: list = []
        self.env: dict = {}          # rnngraph Value -> ONNX name
        self.lazy: dict = {}         # rnngraph Value -> callable writing it (sources)
        self.session = session if session is not None or outer is None else outer.session
        self.route = route if outer is None else outer.route
        # how the export sees the graph (inference.View: removed dropout masks)
        self.view = (view if view is not None else EMPTY) if outer is None \
            else outer.view
        self.used: set = set() if outer is None else outer.used   # Values something reads
        self.routes: dict = {} if outer is None else outer.routes  # loop name -> route taken
        self.owner = self     # the emitter whose graph this one writes into (forks: another)
        self.fed: set = set() if outer is None else outer.fed   # the model's input Values
        self.needed: list = []       # main graph: the rnngraph nodes exported, in graph order
        self.consumers: dict = {}    # main graph: Value -> the needed nodes reading it
        self.scope = ""       # the name of the rnngraph node being exported (naming only)

    # --- scopes ------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.outer is None

    def body(self) -> "Emitter":
        """An emitter for a subgraph (Loop/Scan body) nested in this one."""
        return Emitter(self.onnx, self.opset, self.names, outer=self)

    def fork(self, mapping: dict) -> "Emitter":
        """An emitter writing into this graph's node list with its own value map on top of this
        one's (to export the same rnngraph nodes a second time with other inputs)."""
        em = Emitter(self.onnx, self.opset, self.names, outer=self, nodes=self.nodes)
        em.initializers = self.initializers
        em.env = dict(mapping)
        em.owner = self.owner
        return em

    def lookup(self, value):
        value = self.view.resolve(value)
        em = self
        while em is not None:
            if value in em.env:
                return em.env[value]
            make = em.lazy.pop(value, None)
            if make is not None:   # a source nobody had read yet: write it now
                em.env[value] = make()
                return em.env[value]
            em = em.outer
        return None

    def bind_lazily(self, value, make) -> None:
        """`value` is made by `make()` (returning its name) the first time it is looked up,
        so a variable that only route 1 reads (as converted weights) is not written twice."""
        self.lazy[value] = make

    def bind(self, value, name: str) -> None:
        self.env[value] = name

    # --- writing -----------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A new name; a bare hint ('axes', 'Cast') goes under the rnngraph node being
        exported, so the names read like the graph they came from."""
        if self.scope and "/" not in base:
            base = f"{self.scope}/{base}"
        return self.names.fresh(base)

    def node(self, op_type: str, inputs, n_out: int = 1, hint: str | None = None,
             outputs: list | None = None, **attrs):
        """Add an ONNX node; returns its output name (or the list of them when n_out != 1)."""
        base = hint or op_type
        outs = outputs if outputs is not None else [self.fresh(base if n_out == 1 else
                                                                f"{base}:{i}")
                                                     for i in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        # a node is named after its first output (unique, as every name is)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=outs[0],
                                                **attrs))
        return outs[0] if n_out == 1 and outputs is None else outs

    def const(self, array, hint: str = "const") -> str:
        """A constant tensor: an initializer of the main graph, a Constant node in a body."""
        array = np.asarray(array)
        name = self.fresh(hint)
        tensor = self.onnx.numpy_helper.from_array(array, name)
        if self._is_main_scope():
            self._main().initializers.append(tensor)
        else:
            self.nodes.append(self.helper.make_node("Constant", [], [name], value=tensor,
                                                    name=name))
        return name

    def initializer(self, array, name: str) -> str:
        """A named initializer of the main graph (a variable's value under the user's name)."""
        self._main().initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array),
                                                                            name))
        return name

    def _is_main_scope(self) -> bool:
        return self.owner.is_main

    def _main(self) -> "Emitter":
        em = self
        while em.outer is not None:
            em = em.outer
        return em

    # --- small helpers -----------------------------------------------------------------------
    def i64(self, values, hint="shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def scalar(self, value, dtype, hint="c") -> str:
        return self.const(np.asarray(value, dtype=dtype), hint)

    def cast(self, name: str, dtype, hint=None) -> str:
        return self.node("Cast", [name], to=self.elem_type(dtype), hint=hint or "Cast")

    def unsqueeze(self, name: str, axes, hint=None) -> str:
        return self.node("Unsqueeze", [name, self.i64(list(axes), "axes")], hint=hint)

    def squeeze(self, name: str, axes, hint=None) -> str:
        return self.node("Squeeze", [name, self.i64(list(axes), "axes")], hint=hint)

    def dim(self, name: str, axis: int, hint="dim") -> str:
        """The run-time size of axis `axis` of `name`, an int64 scalar."""
        shape = self.node("Shape", [name], hint=hint + "_shape")
        return self.node("Gather", [shape, self.scalar(axis, np.int64, "axis")], axis=0,
                         hint=hint)

    def elem_type(self, dtype) -> int:
        return self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def value_info(self, name: str, ttype, dims=None):
        """A ValueInfoProto for a TensorType; `dims` may name unknown dims."""
        shape = list(dims) if dims is not None else \
            [None if d is None else int(d) for d in ttype.shape]
        return self.helper.make_tensor_value_info(name, self.elem_type(ttype.dtype), shape)
