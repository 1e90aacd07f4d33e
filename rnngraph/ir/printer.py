"""A jaxpr-like text form: one line per node, loop bodies indented under their node.

    %3:f32[?,5] = matmul %1 %2    # rnn/basic_rnn_cell/MatMul  (model.py:12)
"""
from __future__ import annotations

from .graph import Graph
from .node import Node


def _ref(v) -> str:
    return f"%{v.id}"


def _decl(v) -> str:
    return f"%{v.id}:{v.type}"


def format_node(node: Node, indent: str = "", locations: bool = True) -> list[str]:
    lhs = ", ".join(_decl(v) for v in node.outputs) or "()"
    head = node.op.describe_inputs(node) if hasattr(node.op, "describe_inputs") else \
        " ".join(_ref(v) for v in node.inputs)
    rhs = f"{node.op!r} {head}".rstrip()
    comment = f"# {node.name}"
    if locations and node.location:
        comment += f"  ({node.location})"
    if node.is_gradient:
        comment += "  [grad]"
    if node.device:
        comment += f"  device={node.device}"
    lines = [f"{indent}{lhs} = {rhs}    {comment}"]
    program = getattr(node.op, "program_lines", None)   # (a fused node's instructions)
    if program is not None:
        lines.extend(f"{indent}    {line}" for line in program())
    for sub in node.op.subgraphs():
        lines.extend(format_body(sub, indent + "    ", locations))
    return lines


def format_body(body: Graph, indent: str, locations: bool) -> list[str]:
    """A loop body: its params by role, its nodes, and what it returns, all indented."""
    roles = " ; ".join(f"{role}: " + " ".join(_decl(v) for v in vals)
                       for role, vals in body.params.items() if vals)
    lines = [f"{indent}{{ {body.name}({roles})"]
    for node in body.nodes:
        if node.op.name != "param":
            lines.extend(format_node(node, indent + "    ", locations))
    results = body.results
    ret = " ; ".join(f"{role}: " + " ".join(_ref(v) for v in vals)
                     for role, vals in results.items() if vals)
    lines.append(f"{indent}    return {ret}")
    lines.append(f"{indent}}}")
    return lines


def format_graph(graph: Graph, locations: bool = True) -> str:
    """The whole graph as text (what `print(graph)` shows)."""
    lines = []
    for node in graph.nodes:
        lines.extend(format_node(node, "", locations))
    return "\n".join(lines)
