"""spill_values: move large intermediates out of device memory between their early and late
readers, as a memory plan says (memory/spill.py chooses the values; runtime/planning.py
compiles with `passes={"spill": names, "recompute": names}`).

For each value v named, its readers split in two groups at the widest gap of the schedule
between one read and the next (the producer counting as the first read): an early group (maybe
empty) and a late group. Then

  offloaded ("spill"):     h = to_host(v) goes right after the last early reader (or the
                           producer), v2 = to_device(h) right before the first late reader;
  recomputed ("recompute"): a copy of v's producer goes right before the first late reader
                           (its inputs are read again there; Chen et al. 2016's recomputation);

and the late readers read v2 (or the copy's output) instead of v. So v's device buffer goes
once the early group ran, and a new one exists from the first late reader on. The node order
is what the executor's schedule follows (memory/liveness.py), so placement is the whole point;
the order stays topological (every new node sits after its inputs' producers and before its
readers).

Recomputed values form segments (Chen et al. 2016's checkpointed segments): two named values
are in one segment when one's producer reads the other (directly or through other named
values). A segment's producers are copied once each, in schedule order, right before its
first late reader: the first gradient node reading one of its values after its last producer
(the widest gap as above where no gradient node reads them). A copy reads the copies of the
segment's values and the values outside the segment as they are (the kept checkpoints,
weights, fed slices), and every reader of a segment value from there on reads the copy. A
value the segment's producers alone read (a pre-activation, a split's pieces) is interior:
copied, read by the copies, then gone. So a static_rnn with a checkpoint every k steps reruns
each run of k steps once, from the state kept before it, and holds one segment's values at a
time; a value named alone (its producer's inputs not named) is the one-value case above. The
copies run the same ops on the same inputs, so the values keep their bits; random ops draw the
same numbers again (a pure function of their seed and of their inputs: the run counter's value
and the step).

An add_n node named in "accumulate" becomes a running sum: ((x0 + x1) + x2) + ..., each add
placed right after its operand is made, so no operand waits for the last one (a static_rnn's
per-step weight gradients); add_n sums in that very order, so the bits do not change.

A fed value named in "spill" that unstack nodes alone read (a static_rnn's input sequence,
maybe through one transpose) is left in host memory instead (memory/liveness.py's
Schedule.host_inputs): h = to_host(x) goes before the first reader, and each slice the
unstacks gave becomes a to_device(h, axis, index) copy of that slice alone, made right before
its first early reader and again right before its first late reader (the forward step and the
gradient step reading it).

Values that cannot be spilled are refused with a ValueError naming them: fetched or fed values,
variables, a loop's saved residuals (their plan is the loop's), values nothing reads; and, for
recomputation, values of a node that is stateful or a loop (a split's several outputs are
copied together).
"""
from __future__ import annotations

import copy

from ..ir.graph import Graph
from ..ops.elementwise import Add
from ..ops.transfer import ToDevice, ToHost
from .rewrite import uses

# producers a plan never moves the values of: the caller's, the session's, the loop plan's
_SOURCES = ("placeholder", "variable", "param", "constant")


def split_readers(produced_at: int, read_at: list) -> int:
    """Where a value's readers split: the index into `read_at` (sorted positions of its
    readers in the schedule) of the first late reader, at the widest gap between consecutive
    reads (`produced_at` counting as the first): 0 means every reader is late."""
    best, at, prev = -1, 0, produced_at
    for j, p in enumerate(read_at):
        if p - prev > best:
            best, at = p - prev, j
        prev = p
    return at


def fed_slices(v, readers_of, keep=frozenset()):
    """[(unstack node, the axis of v it slices)] where `v` is a fed value that unstack nodes
    alone read (directly, or through one transpose that keeps the other axes in order), none
    of whose slices is fetched; else None. `readers_of(value)` lists a value's readers."""
    if v.node.op.name != "placeholder":   # (fed and fetched too: then it is copied whole)
        return None
    out = []
    for r in readers_of(v):
        if r.op.name == "unstack" and keep.isdisjoint(r.outputs):
            out.append((r, r.op.axis % v.type.rank))
        elif r.op.name == "transpose" and r.outputs[0] not in keep and readers_of(r.outputs[0]):
            perm = tuple(p % v.type.rank for p in r.op.perm)
            for u in readers_of(r.outputs[0]):
                if u.op.name != "unstack" or not keep.isdisjoint(u.outputs):
                    return None
                a = u.op.axis % v.type.rank
                rest = perm[:a] + perm[a + 1:]
                if list(rest) != sorted(rest):
                    return None
                out.append((u, perm[a]))
        else:
            return None
    return out or None


def spill_problem(v, keep: set, readers: list, recompute: bool = False,
                  readers_of=None) -> str | None:
    """Why value `v` cannot be spilled (None: it can). `readers_of(value)`: a value's
    readers (what a fed value's slices are read by)."""
    node = v.node
    if not recompute and v.node.op.name == "placeholder" and \
            readers_of is not None and fed_slices(v, readers_of, keep):
        return None
    if v in keep:
        return "it is fetched or fed (the caller's)"
    if node.op.name in _SOURCES:
        return f"it is a {node.op.name} (not an intermediate)"
    if node.op.subgraphs():
        ports = node.op.out_ports()
        if v.index >= ports.offset("residual") and \
                v.index < ports.offset("residual") + ports.sizes["residual"]:
            return "it is a loop's saved residual (the loop's own plan places it)"
        if recompute:
            return "its producer is a loop (rerunning it is not a recomputation)"
    if node.op.name in ("to_host", "to_device"):
        return "it is already a transfer"
    if not readers:
        return "nothing reads it"
    if recompute:
        # (random ops are pure functions of their seed, run counter and step: rerunnable)
        if node.op.stateful or node.op.name == "host_rows":
            return f"its producer ({node.op.name}) must not run twice"
    return None


def _fed_on_host(graph: Graph, v, slicers: list, readers_of: dict, position: dict,
                 before: dict, placed: dict) -> None:
    """Fed value v stays on the host; each slice its unstack nodes made is copied to the
    device right before its first early reader and again before its first late reader (a
    recomputed segment's copy among them: before the segment, `placed` says where)."""
    first = min((n for n in readers_of.get(v, ())), key=position.__getitem__)
    h = graph.add_node(ToHost(), [v], [v.type], f"{v.node.name}/to_host", first.location)
    before.setdefault(first, []).append(h)
    for u, axis in slicers:
        for j, part in enumerate(u.outputs):
            rs = sorted(set(readers_of.get(part, ())), key=position.__getitem__)
            if not rs:
                continue
            at = split_readers(position[u], [position[r] for r in rs])
            for group in (rs[:at], rs[at:]):
                if not group:
                    continue
                new = graph.add_node(ToDevice(axis, j), [h.outputs[0]], [part.type],
                                     f"{u.name}/to_device", u.location)
                new.is_gradient = getattr(group[0], "is_gradient", False)
                if group[0] in placed:   # (a segment's copy: the slice goes before them all)
                    before.setdefault(placed[group[0]], []).insert(0, new)
                else:
                    before.setdefault(group[0], []).append(new)
                for r in group:
                    r.inputs = [new.outputs[0] if x is part else x for x in r.inputs]


def spill_values(graph: Graph, host=(), recompute=(), accumulate=()) -> int:
    """Offload the values named in `host` and recompute those in `recompute` (value names of
    `graph`, e.g. "rnn/Tanh_3:0") between their early and late readers; returns how many
    values were spilled. Names the graph does not hold are skipped: a session's passes reach
    all its programs (its variables' initializer, other fetches than a plan's), and
    `pass_stats["spill"]` says how many moved. Raises ValueError for a value that cannot be
    spilled, or names that contradict one another (a summed add_n reading another, a value
    both moved and made by a node the pass removes), and changes nothing then."""

    def here(name: str) -> bool:
        try:
            graph.get_value(name) if ":" in name else graph.get_node(name)
            return True
        except (KeyError, ValueError, IndexError):
            return False
    host, recompute, accumulate = ([n for n in names if here(n)]
                                   for names in (host, recompute, accumulate))
    if not host and not recompute and not accumulate:
        return 0
    readers_of = uses(graph)
    keep = set(graph.results.get("keep", ()))
    position = {n: i for i, n in enumerate(graph.nodes)}
    todo = []
    for names, again in ((host, False), (recompute, True)):
        key = "recompute" if again else "spill"
        for name in names:
            try:
                v = graph.get_value(name)
            except (KeyError, ValueError, IndexError):
                raise ValueError(f"passes[{key!r}] names {name!r}, which is not a value of "
                                 "the compiled graph (the names are those of the program's "
                                 "graph: print(prog.graph) for prog in sess.programs())") \
                    from None
            readers = sorted(set(readers_of.get(v, ())), key=position.__getitem__)
            why = spill_problem(v, keep, readers, again, lambda x: readers_of.get(x, ()))
            if why is not None:
                raise ValueError(f"passes[{key!r}]: value {name!r} cannot be "
                                 f"{'recomputed' if again else 'offloaded'}: {why}")
            at = split_readers(position[v.node], [position[r] for r in readers])
            todo.append((v, readers[:at], readers[at:], again))
    fed = {v: fed_slices(v, lambda x: readers_of.get(x, ()), keep)
           for v, _, _, again in todo if not again and v.node.op.name == "placeholder"}
    sums = []
    for name in accumulate:
        try:
            node = graph.get_node(name)
        except KeyError:
            node = None
        if node is None or node.op.name != "add_n" or len(node.inputs) < 3:
            raise ValueError(f"passes['accumulate'] names {name!r}, which is not an add_n "
                             "node of three or more inputs in the compiled graph")
        sums.append(node)
    moved = {r for _, _, late, _ in todo for r in late}
    if moved & set(sums):
        raise ValueError("passes['accumulate'] names an add_n node that also reads a value "
                         "the spill or recompute keys move: " + ", ".join(
                             sorted(n.name for n in moved & set(sums))))
    nested = [n.name for n in sums if any(x.node in sums for x in n.inputs)]
    if nested:
        raise ValueError(f"passes['accumulate'] names add_n nodes that read another named "
                         f"add_n ({', '.join(nested)}): name one of each such pair")
    gone_early = set(sums) | {r for v in fed if fed[v] for r in readers_of.get(v, ())} | {
        u for slicers in fed.values() if slicers for u, _ in slicers}
    clash = sorted({v.name for v, _, _, _ in todo if v.node in gone_early} |
                   {x.name for n in sums for x in n.inputs if x.node in gone_early})
    if clash:
        raise ValueError(f"passes['spill'] / ['accumulate'] name values that the same config "
                         f"removes (a summed add_n's result, a slice of a fed sequence left "
                         f"on the host): {', '.join(clash)}")
    before: dict = {}
    after: dict = {}
    for node in sums:
        made = [position.get(x.node, -1) for x in node.inputs]
        acc, anchor = node.inputs[0], max(made[0], made[1])
        for j in range(1, len(node.inputs)):
            anchor = max(anchor, made[j])
            new = graph.add_node(Add(), [acc, node.inputs[j]], [node.outputs[0].type],
                                 f"{node.name}/acc", node.location)
            new.is_gradient = getattr(node, "is_gradient", False)
            at = graph.nodes[anchor] if anchor >= 0 else node
            (after if anchor >= 0 else before).setdefault(at, []).append(new)
            acc = new.outputs[0]
        for r in readers_of.get(node.outputs[0], ()):
            r.inputs = [acc if x is node.outputs[0] else x for x in r.inputs]
        for role, vs in graph.results.items():
            graph.results[role] = [acc if x is node.outputs[0] else x for x in vs]
    placed = _segments(graph, [v for v, _, _, again in todo if again], readers_of, position,
                       before)
    for v, early, late, again in todo:
        node = v.node
        if v.node.op.name == "placeholder":   # (a fed value left on the host)
            _fed_on_host(graph, v, fed[v], readers_of, position, before, placed)
            continue
        if again:
            continue   # (recomputed above, a segment at a time)
        first, last = late[0], (early[-1] if early else node)
        out = graph.add_node(ToHost(), [v], [v.type], f"{node.name}/to_host", node.location)
        new = graph.add_node(ToDevice(), [out.outputs[0]], [v.type], f"{node.name}/to_device",
                             node.location)
        back = new.outputs[0]
        after.setdefault(last, []).append(out)
        before.setdefault(first, []).append(new)
        out.is_gradient = node.is_gradient
        new.is_gradient = getattr(first, "is_gradient", False)
        for r in late:
            r.inputs = [back if x is v else x for x in r.inputs]
    added = {n for ns in list(before.values()) + list(after.values()) for n in ns}
    gone = set(sums) | {r for v in fed for r in readers_of.get(v, ())} | {
        u for slicers in fed.values() for u, _ in slicers}
    order = []
    for n in graph.nodes:
        if n in added:
            continue
        order.extend(before.get(n, ()))
        if n not in gone:
            order.append(n)
        order.extend(after.get(n, ()))
    _check_order(order, gone)
    graph.nodes = order
    for n in gone:
        graph._by_name.pop(n.name, None)
    graph.version += 1
    return len(todo) + len(sums)


def late_start(made_at: list, read_at: list, gradient_at=()):
    """Where a segment's copies go: the position of its first late reader, None if nothing
    reads its values after its last producer. `made_at`: its producers' positions;
    `read_at`: positions of its values' readers; `gradient_at`: those of them that are
    gradient nodes. A segment of several producers: its first gradient reader after them
    (their forward readers before it read the values first made); one producer, or no
    gradient reader: the first reader after the widest gap (split_readers, the last producer
    counting as the first read)."""
    end = max(made_at)
    grads = [p for p in gradient_at if p > end]
    if len(set(made_at)) > 1 and grads:
        return min(grads)
    rs = sorted({p for p in read_at if p > end})
    return rs[split_readers(end, rs)] if rs else None


def segments_of(values) -> list:
    """The segments of the values named for recomputation: [[producer nodes]] in the order
    given, two nodes in one segment when one reads an output of the other (union-find over
    the named values' producers)."""
    nodes = list(dict.fromkeys(v.node for v in values))
    parent = {n: n for n in nodes}

    def root(n):
        while parent[n] is not n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n
    for n in nodes:
        for x in n.inputs:
            if x.node in parent:
                a, b = root(n), root(x.node)
                if a is not b:
                    parent[a] = b
    groups: dict = {}
    for n in nodes:
        groups.setdefault(root(n), []).append(n)
    return list(groups.values())


def _segments(graph: Graph, values: list, readers_of: dict, position: dict,
              before: dict) -> dict:
    """Copy each segment of the recomputed `values` once, right before the first late reader
    of its values; readers from there on read the copies. Returns {copy: the node it goes
    before}; the copies join `readers_of` and `position` (just before that node), so a fed
    value's slices left on the host reach them too."""
    placed: dict = {}
    node_at = {i: n for n, i in position.items()}
    for seg in segments_of(values):
        seg.sort(key=position.__getitem__)
        reads = [r for n in seg for v in n.outputs for r in readers_of.get(v, ())
                 if r in position]
        at = late_start([position[n] for n in seg], [position[r] for r in reads],
                        [position[r] for r in reads if r.is_gradient])
        if at is None:
            raise ValueError("passes['recompute']: nothing after the segment of "
                             f"{seg[0].name} reads its values")
        first = node_at[at]
        copies: dict = {}
        for n in seg:
            new = graph.add_node(copy.copy(n.op), [copies.get(x, x) for x in n.inputs],
                                 [v.type for v in n.outputs], f"{n.name}/recompute",
                                 n.location)
            new.is_gradient = getattr(first, "is_gradient", False)
            copies.update(zip(n.outputs, new.outputs))
            before.setdefault(first, []).append(new)
            placed[new] = first
            position[new] = position[first] - 0.5
            for x in new.inputs:
                readers_of.setdefault(x, []).append(new)
        at = position[first]
        for v, back in copies.items():
            for r in readers_of.get(v, ()):
                if position.get(r, -1) >= at and r not in placed:
                    r.inputs = [back if x is v else x for x in r.inputs]
    return placed


def _check_order(order: list, gone: set) -> None:
    """Every node reads values made before it by nodes still there: a config the checks
    above let through must not leave a broken graph behind (the compile's own clone, which
    the error discards)."""
    made = set()
    for n in order:
        for x in n.inputs:
            if x.node in gone or (x.node.graph is n.graph and x.node not in made):
                raise ValueError(f"the spill config leaves {n.name} reading {x.name} before it "
                                 "is made or after its node is removed: the names contradict "
                                 "one another")
        made.add(n)
