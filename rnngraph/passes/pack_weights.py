"""pack_weights: a loop's per-step product against a loop-invariant weight, h_t @ W, packs W
once before the loop and runs our own GEMM each step (backends/numba/panel_gemm.py) instead of
OpenBLAS, which re-packs W and wakes its threads on every call.

Runs last: the passes before it move per-step products out of the loop (hoist_sequence, sink)
by recognising matmul nodes. Needs numba on Linux x86-64 with AVX2/FMA and the opt-in helper
thread (rg.config.cpu_helper_thread): on one thread our GEMM did not beat OpenBLAS's two on any
benchmark shape. A session on another device switches it off (runtime/session.py)."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..kernels import feature
from ..ops.linalg import MatMul
from ..ops.panels import PackPanels, PanelMatMul
from .loop_ports import add_invariant, outer_inputs
from .rewrite import for_each_loop, remove_dead, replace_node, toposort

_F32 = np.dtype(np.float32)


def pack_loop_weights(graph: Graph) -> int:
    """Rewrite every qualifying product in every loop body; return how many."""
    gemm = feature("packed_gemm")   # (offered by the numba backend; used where it wants to be)
    if gemm is None or not gemm.wanted():
        return 0
    return for_each_loop(graph, _pack)


def _pack(graph: Graph, loop) -> int:
    body = loop.op.body
    outer = outer_inputs(loop)
    invariant = set(body.params.get("invariant", []))
    panels: dict = {}   # outer weight -> the body param of its panels
    count = 0
    for node in list(body.nodes):
        if type(node.op) is not MatMul:
            continue
        a, w = node.inputs
        if w not in invariant or a.type.rank != 2 or w.type.rank != 2 or \
                a.dtype != _F32 or w.dtype != _F32:
            continue
        source = outer[w]
        if source not in panels:
            op = PackPanels()
            pack = graph.add_node(op, [source], [op.infer(source.type)],
                                  f"{loop.name}/packed_weight", loop.location)
            pack.is_gradient = loop.is_gradient
            label = "panels/" + w.node.name.rsplit("/", 1)[-1]
            panels[source] = add_invariant(loop, pack.outputs[0], label)
        replace_node(body, node, PanelMatMul(), [a, w, panels[source]], "packed")
        count += 1
    if count:
        remove_dead(body, [])
        toposort(body)
    return count
