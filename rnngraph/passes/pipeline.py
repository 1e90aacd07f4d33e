"""The compile-time pass pipeline. Each pass is a small graph-to-graph function that can be
switched off by name, e.g. Session(graph, passes={"hoist_sequence": False}).

`{"chunk_steps": C}` in the config makes the passes that would build whole-sequence stacks
work in chunks of C steps instead, inside the loop (ops/loop.py's chunk prologue and
epilogue): hoist_sequence, sink_accumulators and sink_outputs. The
memory planner (runtime/planning.py) compiles so when a budget cannot hold whole stacks.

Passes in OPT_IN run only when the config names them (`{"stream_outputs": True}`,
`{"host_sequences": True}`, `{"host_outputs": True}`, `{"sink_gather": True}`): the planner
asks for them when a budget cannot be met otherwise. Without a budget, a Session runs
`stream_outputs: True` only where it does not raise the predicted peak
(runtime/stream_guard.py); `"always"` runs it regardless.

`{"spill": (names...), "recompute": (names...)}` runs spill_values last (passes/
spill_values.py): the named values of the compiled graph are offloaded to host memory, or
recomputed, between their early and late readers; the planner (memory/spill.py) names them."""
from __future__ import annotations

import difflib

import numpy as np

from ..errors import user_location
from ..ir.graph import Graph
from ..ir.value import Value
from .contiguous_weights import lay_out_loop_weights
from .dce import eliminate_dead_code
from .fuse import fuse_elementwise
from .hoist_sequence import hoist_sequence_work
from .host_outputs import clear_host_marks, host_outputs
from .host_sequences import host_sequences
from .join_slices import join_slice_gradients
from .reuse_outputs import reuse_output_stacks
from .shape_reads import read_shapes_early
from .share_copies import share_copies
from .share_packs import share_packs
from .licm import hoist_invariants
from .pack_weights import pack_loop_weights
from .shrink_batch import clear_row_marks, shrink_active_batch
from .simplify import eliminate_common_subexpressions, fold_constants
from .sink import sink_loops
from .sink_gather import sink_gather
from .sort_rows import fold_sort_into_products
from .spill_values import spill_values
from .stream_outputs import stream_output_consumers

PASSES = {   # in pipeline order
    "fold_constants": fold_constants,   # (first: the sweep after it is the "dce" pass itself)
    "dce": eliminate_dead_code,
    "cse": eliminate_common_subexpressions,
    "shape_reads": read_shapes_early,
    "licm": hoist_invariants,
    "stream_outputs": stream_output_consumers,
    "hoist_sequence": hoist_sequence_work,
    "sink_accumulators": lambda g, chunk_steps=None: sink_loops(
        g, outputs=False, accumulators=True, chunk_steps=chunk_steps),
    "sink_outputs": lambda g, chunk_steps=None: sink_loops(
        g, outputs=True, accumulators=False, chunk_steps=chunk_steps),
    "sink_gather": sink_gather,   # (after the sequence passes: loops reading rows per step)
    "join_slices": join_slice_gradients,
    "reuse_outputs": reuse_output_stacks,
    "share_packs": share_packs,
    "sort_rows": fold_sort_into_products,
    "host_sequences": host_sequences,   # (before share_copies: the copies it no longer needs)
    "host_outputs": host_outputs,   # (after the chunk passes: it leaves epilogue outputs be)
    "fuse": fuse_elementwise,
    "shrink_batch": shrink_active_batch,
    "pack_weights": pack_loop_weights,
    "contiguous_weights": lay_out_loop_weights,
    "share_copies": share_copies,
}
CHUNKED = ("hoist_sequence", "sink_accumulators", "sink_outputs")   # take chunk_steps=
CHUNK_KEY = "chunk_steps"
# off unless the config says True
OPT_IN = ("stream_outputs", "host_sequences", "host_outputs", "sink_gather")
SPILL_KEY, RECOMPUTE_KEY = "spill", "recompute"   # value names spill_values moves (last)
ACCUMULATE_KEY = "accumulate"   # add_n nodes spill_values turns into running sums (last)
SPILL_KEYS = (SPILL_KEY, RECOMPUTE_KEY, ACCUMULATE_KEY)


def spilled_of(config) -> tuple:
    """(names to offload, names to recompute, add_n node names to accumulate) the config's
    spill, recompute and accumulate keys give, checked: tuples (or lists) of distinct names."""
    out = []
    for key in SPILL_KEYS:
        names = config.get(key) if isinstance(config, dict) else None
        if names is None:
            out.append(())
            continue
        if isinstance(names, str) or not isinstance(names, (tuple, list)) or not all(
                isinstance(n, str) and n for n in names):
            what = "add_n node names (str" if key == ACCUMULATE_KEY else \
                "value names (str, e.g. 'rnn/Tanh_3:0'"
            raise ValueError(f"passes[{key!r}] must be a tuple of {what}), got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"passes[{key!r}] names a value twice: {names!r}")
        out.append(tuple(names))
    both = set(out[0]) & set(out[1])
    if both:
        raise ValueError(f"passes['spill'] and passes['recompute'] both name "
                         f"{sorted(both)}: a value is offloaded or recomputed, not both")
    return tuple(out)


def chunk_steps_of(config) -> int | None:
    """The config's chunk_steps (None: whole-sequence stacks), checked."""
    c = config.get(CHUNK_KEY) if isinstance(config, dict) else None
    if c is None:
        return None
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
        raise TypeError(f"passes['chunk_steps'] must be an int (steps per chunk), got "
                        f"{type(c).__name__} {c!r} (at {user_location()})")
    if c < 1:
        raise ValueError(f"passes['chunk_steps'] must be a positive int, got {c!r} (at "
                         f"{user_location()})")
    return int(c)


def enabled_passes(config) -> list[str]:
    """config: True (all), False/None (none), or {name: bool} overriding the defaults."""
    if config is True:
        return [name for name in PASSES if name not in OPT_IN]
    if config is not None and not isinstance(config, (bool, dict)):
        raise TypeError(f"passes must be True (all), False (none) or a dict "
                        f"{{pass name: bool, ...}}, got {type(config).__name__} {config!r} (at "
                        f"{user_location()})")
    if not config:
        return []
    chunk_steps_of(config)
    spilled_of(config)
    if config.get("stream_outputs", False) not in (True, False, "always"):
        raise ValueError(f"passes['stream_outputs'] must be True (streamed where that does not "
                         f"raise the peak), 'always' or False, got "
                         f"{config['stream_outputs']!r}")
    unknown = set(config) - set(PASSES) - {CHUNK_KEY, *SPILL_KEYS}
    if unknown:
        raise ValueError(f"unknown passes {sorted(unknown)}; known: {sorted(PASSES)}, and "
                         f"the keys {[CHUNK_KEY, *SPILL_KEYS]}")
    return [name for name in PASSES   # (a chunk_steps alone: all but the opt-in ones)
            if config.get(name, name not in OPT_IN)]


def check_spill_names(graph: Graph, source: Graph, config) -> None:
    """ValueError for names in the config's spill, recompute and accumulate keys that neither
    the compiled `graph` holds nor could come from the user's `source` graph (no node of it
    names the name's node or a scope above it): a typo, which would otherwise move nothing. A
    name the compiled graph lacks but the source explains is skipped (the passes reach every
    program of the session: its variables' initializer holds none of a loop's values)."""
    unknown = []
    for key, names in zip(SPILL_KEYS, spilled_of(config)):
        for name in names:
            node_name, sep, idx = name.rpartition(":") if ":" in name else (name, "", "0")
            node = graph._by_name.get(node_name)
            if node is not None:
                if not idx.isdigit() or int(idx) >= len(node.outputs):
                    unknown.append((key, name))
                continue
            parts = node_name.split("/")
            if not any("/".join(parts[:k]) in source._by_name for k in range(len(parts), 0, -1)):
                unknown.append((key, name))
    if not unknown:
        return
    known = sorted({x for g in (graph, source) for n in g.nodes
                    for x in (n.name, *(v.name for v in n.outputs))})
    said = []
    for key, name in unknown:
        close = difflib.get_close_matches(name, known, n=3)
        said.append(f"passes[{key!r}] names {name!r}" +
                    (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
    raise ValueError(f"{'; '.join(said)}: no such value or node in the graph, at "
                     f"{user_location()} (the names are those of the compiled program's graph: "
                     "print(prog.graph) for prog in sess.programs(), or a plan's passes)")


def optimize(graph: Graph, keep: list[Value], config=True,
             notes: list | None = None, source: Graph | None = None, fed: int = 0
             ) -> tuple[list[Value], dict]:
    """Run the enabled passes in place on `graph` (a compile-time clone). `keep` are the values
    that must survive (fetches and fed values: the last `fed` of them, which the passes also
    see as `graph.results["fed"]`: the caller's arrays replace what the graph would compute
    there); a pass may replace them, so the values to use afterwards are returned, with how
    much each pass changed. `notes`: a list to which stream_outputs appends why it left an
    output stack whole (the memory plan prints them). `source`: the user's graph `graph` was
    cloned from (spill names are checked against both: check_spill_names)."""
    graph.results = {"keep": list(keep)}  # replace_uses keeps these up to date
    if fed:
        graph.results["fed"] = list(keep[len(keep) - fed:])
    stats = {}
    passes = enabled_passes(config)
    chunk = chunk_steps_of(config)
    for i, name in enumerate(passes):  # (the clone holds only what `keep` needs already)
        if name == "stream_outputs" and notes is not None:
            stats[name] = stream_output_consumers(graph, refusals=notes)
        else:
            stats[name] = PASSES[name](graph, chunk_steps=chunk) if chunk and name in CHUNKED \
                else PASSES[name](graph)
        if stats[name] and "dce" in passes[:i]:  # (a pass before "dce" leaves it to that)
            stats["dce"] += eliminate_dead_code(graph)  # what this pass left behind
    if passes and "shrink_batch" not in passes:   # (a saved program's marks, made when it
        clear_row_marks(graph)                      # was compiled: switched off, none hold)
    if "host_outputs" not in passes:   # (the same: the passes, or nodes added since, may read
        clear_host_marks(graph, keep_valid=not passes)   # them now)
    host, again, sums = spilled_of(config)
    if host or again or sums:   # (last: the names are those of the graph the passes made)
        if source is not None:
            check_spill_names(graph, source, config)
        stats[SPILL_KEY] = spill_values(graph, host, again, sums)
    kept = graph.results.pop("keep")
    graph.results.pop("fed", None)
    return kept, stats
