"""The compile-time pass pipeline. Each pass is a small graph-to-graph function that can be
switched off by name, e.g. Session(graph, passes={"hoist_sequence": False})."""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.value import Value
from .dce import eliminate_dead_code
from .fuse import fuse_elementwise
from .hoist_sequence import hoist_sequence_work
from .join_slices import join_slice_gradients
from .reuse_outputs import reuse_output_stacks
from .shape_reads import read_shapes_early
from .share_copies import share_copies
from .share_packs import share_packs
from .licm import hoist_invariants
from .pack_weights import pack_loop_weights
from .shrink_batch import shrink_active_batch
from .simplify import eliminate_common_subexpressions, fold_constants
from .sink import sink_loops
from .sort_rows import fold_sort_into_products

PASSES = {   # in pipeline order
    "fold_constants": fold_constants,   # (first: the sweep after it is the "dce" pass itself)
    "dce": eliminate_dead_code,
    "cse": eliminate_common_subexpressions,
    "shape_reads": read_shapes_early,
    "licm": hoist_invariants,
    "hoist_sequence": hoist_sequence_work,
    "sink_accumulators": lambda g: sink_loops(g, outputs=False, accumulators=True),
    "sink_outputs": lambda g: sink_loops(g, outputs=True, accumulators=False),
    "join_slices": join_slice_gradients,
    "reuse_outputs": reuse_output_stacks,
    "share_packs": share_packs,
    "sort_rows": fold_sort_into_products,
    "fuse": fuse_elementwise,
    "shrink_batch": shrink_active_batch,
    "pack_weights": pack_loop_weights,
    "share_copies": share_copies,
}


def enabled_passes(config) -> list[str]:
    """config: True (all), False/None (none), or {name: bool} overriding the defaults."""
    if config is True:
        return list(PASSES)
    if not config:
        return []
    unknown = set(config) - set(PASSES)
    if unknown:
        raise ValueError(f"unknown passes {sorted(unknown)}; known: {sorted(PASSES)}")
    return [name for name in PASSES if config.get(name, True)]


def optimize(graph: Graph, keep: list[Value], config=True) -> tuple[list[Value], dict]:
    """Run the enabled passes in place on `graph` (a compile-time clone). `keep` are the values
    that must survive (fetches and fed values); a pass may replace them, so the values to use
    afterwards are returned, with how much each pass changed."""
    graph.results = {"keep": list(keep)}  # replace_uses keeps these up to date
    stats = {}
    passes = enabled_passes(config)
    for i, name in enumerate(passes):  # (the clone holds only what `keep` needs already)
        stats[name] = PASSES[name](graph)
        if stats[name] and "dce" in passes[:i]:  # (a pass before "dce" leaves it to that)
            stats["dce"] += eliminate_dead_code(graph)  # what this pass left behind
    kept = graph.results.pop("keep")
    return kept, stats
