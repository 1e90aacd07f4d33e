"""Verifier: the IR invariants every pass and builder must keep."""
from __future__ import annotations

from ..errors import VerificationError  # noqa: F401  (raised here; rg.ir.VerificationError)
from .device import canonical
from .graph import Graph


def _device_problem(device: str) -> bool:
    try:
        return canonical(device) != device
    except ValueError:
        return True


def verify(graph: Graph) -> None:
    """Raise VerificationError unless: every value is defined once, before its uses, in this
    graph (or captured into it); output types match the op's shape rule; loop bodies verify."""
    defined: set = set()
    names: set = set()
    for node in graph.nodes:
        if node.graph is not graph:
            raise VerificationError(f"{node.name} claims another graph")
        if node.name in names:
            raise VerificationError(f"duplicate node name {node.name}")
        names.add(node.name)
        if not isinstance(node.device, str) or (node.device and _device_problem(node.device)):
            raise VerificationError(f"{node.name}: device {node.device!r} is not a canonical "
                                    "device string (like '/device:GPU:0')")
        for v in node.inputs:
            if v.graph is not graph:
                raise VerificationError(f"{node.name} reads {v.name} from another graph "
                                        "(values from outer graphs must be captured)")
            if v not in defined:
                raise VerificationError(f"{node.name} reads {v.name} before it is defined "
                                        "(a cycle, or nodes out of order)")
        for i, v in enumerate(node.outputs):
            if v.node is not node or v.index != i:
                raise VerificationError(f"output {i} of {node.name} is not owned by it")
            if v in defined:
                raise VerificationError(f"{v.name} assigned twice")
            defined.add(v)
        if node.op.name not in ("param", "placeholder", "variable", "constant") and \
                not hasattr(node.op, "verify"):
            types = node.op.infer(*[v.type for v in node.inputs])
            types = [types] if not isinstance(types, (list, tuple)) else list(types)
            got = [v.type for v in node.outputs]
            if len(types) != len(got) or any(
                    a.dtype != b.dtype or len(a.shape) != len(b.shape) for a, b in zip(types, got)):
                raise VerificationError(f"{node.name}: outputs {got} do not match its op's rule "
                                        f"{types}")
        if hasattr(node.op, "verify"):
            node.op.verify(node)
        for sub in node.op.subgraphs():
            verify(sub)
