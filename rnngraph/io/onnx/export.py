"""rg.io.to_onnx: an rnngraph inference graph as an ONNX model.

The driver: it names the model's inputs (the feeds) and outputs (the fetches), walks the nodes
the fetches need in graph order and hands each to its mapping: sources here, loop nodes to
rnn_ops.py (ONNX's RNN/LSTM/GRU ops, where the loop is a recognised cell) or loops.py (a Scan
or Loop whose body is exported op by op), every other op to the table in ops.py.

The graph is seen through an inference.View (dropout at keep probability 1 removed). After a
route-1 loop, the values the user sees are rebound to leaner ops where the graph allows it:
the op written on the user's (unsorted) rows, and one bidirectional op for the two loops of a
bidirectional_dynamic_rnn (bidirectional.py). The ops and sorting they replace are then read
by nothing, and a last pass drops every ONNX node and initializer nothing reads.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from ...errors import ExportError
from ...ir.value import Value
from ...nest import flatten
from ...version import __version__
from . import bidirectional, loops, rnn_ops
from .inference import EMPTY, dropout_view
from .builder import Emitter, Names
from .ops import TABLE

DEFAULT_OPSET = 18
MIN_OPSET = 17
ROUTES = ("auto", "rnn", "loop")
_TRAINING_OPS = ("assign", "init_variables", "group")
_RANDOM_OPS = ("random_standard", "multinomial", "random_shuffle")


def import_onnx():
    """The onnx module, imported only when exporting: onnx is an optional extra, and rnngraph
    must import without it."""
    try:
        return importlib.import_module("onnx")
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install rnngraph[onnx] "
                          "(onnx and onnxruntime)") from None


@dataclass
class Exported:
    """An exported model with the rnngraph Values behind its input and output names."""
    model: object
    inputs: dict = field(default_factory=dict)    # ONNX input name -> Value (a feed)
    outputs: dict = field(default_factory=dict)   # ONNX output name -> Value (a fetch)
    # loop node name -> "rnn", "rnn-bidirectional" (one op for both loops), "scan" or "loop"
    routes: dict = field(default_factory=dict)


def to_onnx(fetches, path=None, feeds=None, session=None, opset=None, dynamic_axes=None,
            route="auto", check=True, inference=True):
    """Export the inference graph computing `fetches` as an ONNX model; returns the
    `onnx.ModelProto` and writes it to `path` when one is given.

    fetches: a Value, a (nested) list/tuple of Values (an LSTMStateTuple too), or a dict
        {output name: Value or nested Values}. Outputs are named by the dict keys (nested ones
        as key/0, key/c, ...), else by their nodes' names.
    feeds: the model's inputs: None (every placeholder the fetches need, by its name), a list
        of Values or a dict {input name: Value}. A fed value that is not a placeholder cuts
        the graph there, as feeding it in a Session does.
    session: the Session holding the variables' values, which become initializers under the
        variables' names. Needed when the fetches read variables.
    opset: the ONNX opset (default 18, at least 17).
    dynamic_axes: {input name: {axis: dim name}} (or a list of axes) naming dims of the
        inputs; unknown dims are named anyway (batch, time, ...), and a static dim named here
        becomes dynamic.
    route: "auto" exports a float32 loop node that runs a recognised cell (BasicRNNCell,
        LSTMCell without projection or clipping, BasicLSTMCell, GRUCell, a MultiRNNCell of
        those, as dynamic_rnn builds them) as ONNX's RNN/LSTM/GRU ops (the two loops of a
        bidirectional_dynamic_rnn as one op with direction="bidirectional" where both are
        one layer of the same op) and any other loop as a Scan or Loop; "loop" exports
        every loop as a Scan or Loop; "rnn" requires the RNN/LSTM/GRU route for every loop
        (any float dtype).
    check: run `onnx.checker.check_model(full_check=True)` on the result.
    inference: export the model as it runs for inference, as torch.onnx exports eval mode:
        dropout (nn.dropout, DropoutWrapper, the cells' dropout=) whose keep probability is 1
        at export (a constant, or a placeholder_with_default left out of `feeds`, whose
        default is used) is left out of the model; a dropout whose keep probability is fed
        or not 1 raises ExportError naming it and its line. False exports the graph as
        built (a dropout's random node then has no ONNX mapping).

    Raises ExportError naming the op, its node and the line that built it when an op has no
    ONNX mapping, and ImportError (pip install rnngraph[onnx]) without the onnx package.
    """
    return export(fetches, path, feeds, session, opset, dynamic_axes, route, check,
                  inference).model


def export(fetches, path=None, feeds=None, session=None, opset=None, dynamic_axes=None,
           route="auto", check=True, inference=True) -> Exported:
    """to_onnx, returning the model together with the Values behind its names."""
    onnx = import_onnx()
    if route not in ROUTES:
        raise ValueError(f"to_onnx: route must be one of {', '.join(ROUTES)}, got {route!r}")
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"to_onnx: opset must be an int in [{MIN_OPSET}, {newest}] (the "
                         f"installed onnx's newest), got {opset!r}")
    outputs = _named_fetches(fetches)
    graph = outputs[0][1].graph.root
    for name, v in outputs:
        if v.graph.root is not graph:
            raise ValueError(f"to_onnx: fetch {name!r} belongs to another graph than "
                             f"{outputs[0][0]!r}")
    if session is not None and session.graph is not graph:
        raise ValueError("to_onnx: the session runs another graph than the fetches'")
    fed = _fed(feeds)
    view = dropout_view(graph, fed) if inference else EMPTY
    needed = _needed(graph, [v for _, v in outputs], fed, view)
    drawn = _random_node(needed, view)
    if drawn is not None:   # random numbers (a dropout that stays): say so before the counter
        raise ExportError(view.reasons.get(drawn) or _unmappable(drawn))
    for node in needed:   # a training op among the fetches: say so before anything else
        if node.op.name in _TRAINING_OPS or (node.op.stateful and node.op.name not in (
                "variable", "read_variable")):   # (a read of a variable: its value)
            raise ExportError(_unmappable(node))
    inputs = _named_feeds(feeds, needed, fed)
    names = Names()
    for n, _ in inputs:
        names.reserve(n)
    for n, _ in outputs:
        names.reserve(n)
    em = Emitter(onnx, int(opset), names, session=session, route=route, view=view)
    em.needed = needed
    for node in needed:
        em.used.update(view.inputs(node))
        for v in view.inputs(node):
            em.consumers.setdefault(v, []).append(node)
    em.used.update(view.resolve(v) for _, v in outputs)
    dims = _input_dims(inputs, needed, dynamic_axes or {})
    graph_inputs = []
    for n, v in inputs:
        em.bind(v, n)
        em.fed.add(v)
        graph_inputs.append(em.value_info(n, v.type, dims[n]))
    emit_nodes(em, needed)
    graph_outputs = []
    for n, v in outputs:
        em.node("Identity", [em.lookup(v)], outputs=[n])
        graph_outputs.append(em.value_info(n, v.type, [_out_dim(d) for d in v.shape]))
    _prune(em, [n for n, _ in outputs])
    onnx_graph = onnx.helper.make_graph(em.nodes, graph.name or "rnngraph", graph_inputs,
                                        graph_outputs, initializer=em.initializers)
    opsets = [onnx.helper.make_opsetid("", int(opset))]
    model = onnx.helper.make_model(onnx_graph, opset_imports=opsets, producer_name="rnngraph",
                                   producer_version=__version__,
                                   ir_version=onnx.helper.find_min_ir_version_for(opsets))
    _name_output_dims(onnx, model)
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save_model(model, str(path))
    return Exported(model, dict(inputs), dict(outputs), dict(em.routes))


# --- the walk ---------------------------------------------------------------------------------
def emit_nodes(em: Emitter, nodes) -> None:
    """Export `nodes` (in graph order) into `em`, binding each output Value to its ONNX name."""
    view = em.view
    em.used.update(v for node in nodes for v in view.inputs(node))  # (loops skip unread outputs)
    for node in nodes:
        name = node.op.name
        if name == "param" or all(v in em.env for v in node.outputs):
            continue   # a body param (bound by its loop) or a fed value (an input)
        start = len(em.nodes)
        em.scope = node.name
        if name == "placeholder":
            raise ExportError(f"to_onnx: {node.describe()} is needed but not fed: add it to "
                              "feeds (or leave feeds=None)")
        elif name in ("variable", "constant"):
            em.bind_lazily(node.outputs[0], _source(em, node))
            continue
        elif name == "loop":
            outs = _loop(em, node)
        elif name in TABLE:
            reads = node.inputs[:1] if name in ("identity", "read_variable") else node.inputs
            outs = TABLE[name](em, node, [_input(em, node, v) for v in reads])   # (the rest
            #                                         of an identity's: control dependencies)
        elif node in view.reasons:   # a dropout mask inference=True could not remove
            raise ExportError(view.reasons[node])
        else:
            raise ExportError(_unmappable(node))
        for v, o in zip(node.outputs, outs):
            if o is not None:
                em.bind(v, o)
        for onnx_node in em.nodes[start:]:
            onnx_node.doc_string = f"{node.op.name} '{node.name}' (built at {node.location})"
    em.scope = ""


def _random_node(nodes, view):
    """The first node drawing random numbers among `nodes` and the live nodes of their loop
    bodies (a dropout inference=True keeps, or any with inference=False); None if none."""
    for node in nodes:
        if node.op.name in _RANDOM_OPS:
            return node
        if node.op.name == "loop":
            found = _random_node(view.live_nodes(node.op.body), view)
            if found is not None:
                return found
    return None


def _input(em, node, v):
    name = em.lookup(v)
    if name is None:
        raise ExportError(f"to_onnx: {node.describe()} reads {v.name}, which was not exported "
                          "(an input of a loop body that is not one of its params?)")
    return name


def _loop(em, node):
    if em.route != "loop":
        match, why = rnn_ops.match(node, any_float=em.route == "rnn", view=em.view)
        if match is not None:
            em.routes[node.name] = "rnn"
            # the weights go in converted: only the inputs route 1 reads are looked up
            outs = rnn_ops.emit(em, node, lambda v: _input(em, node, v), match)
            if em.is_main:
                _unsorted(em, node, match)
                # the backward half of a bidirectional_dynamic_rnn: fuse the two
                _bidirectional(em, node, match, outs)
            return outs
        if em.route == "rnn":
            raise ExportError(f"to_onnx(route='rnn'): {node.describe()} cannot be exported as "
                              f"ONNX's RNN/LSTM/GRU ops: {why}; route='auto' exports it as a "
                              "Loop or Scan")
    read = set(em.view.inputs(node))   # (not an input only a removed dropout mask read)
    ins = [_input(em, node, v) if em.view.resolve(v) in read else None for v in node.inputs]
    outs, kind = loops.emit_loop(em, node, ins, emit_nodes)
    em.routes[node.name] = kind
    return outs


def _unsorted(em, node, match):
    """With sequence_length, dynamic_rnn sorts the rows by length around its loop; ONNX's
    ops take the rows in any order, so the ops are written a second time on the user's rows
    and the values after the unsorting are bound to them. The sorted version and the sorting
    are then read by nothing and pruned (unless something else reads them)."""
    if not match.masked:
        return
    side = bidirectional.trace(node, em.view, em.consumers)
    if side is None or not _exported(em, [side.source, side.lengths] + side.init):
        return   # (a value before the sorting was cut off by feeds: keep the sorted op)
    x = em.lookup(side.source)
    if side.batch_major:
        x = em.node("Transpose", [x], perm=[1, 0, 2], hint=f"{node.name}/time_major")
    outs = rnn_ops.emit(em, node, lambda v: _input(em, node, v), match,
                        unsorted=(x, [em.lookup(v) for v in side.init],
                                  em.lookup(side.lengths)))
    parts = node.op.out_ports().split(outs)
    y = parts["output"][0]
    if side.out_sink is not None:
        if side.batch_major:
            y = em.node("Transpose", [y], perm=[1, 0, 2], hint=f"{node.name}/batch_major")
        em.bind(side.out_sink, y)
    for v, s in zip(side.state_sinks, parts["carried"]):
        if v is not None:
            em.bind(v, s)


def _bidirectional(em, node, match, outs):
    """When loop `node` is the backward loop of a bidirectional_dynamic_rnn whose forward
    loop went to route 1 too, one ONNX op with direction="bidirectional" computes what the
    user sees of both (bidirectional.py); the separate ops are pruned if nothing else reads
    them."""
    pair = bidirectional.find_pair(node, em.needed, em.consumers, em.view, match)
    if pair is None:
        return
    fw, bw = pair[0], pair[1]
    if em.routes.get(fw.node.name) != "rnn" or \
            not _exported(em, [fw.source, fw.lengths] + fw.init + bw.init):
        return
    # the forward loop's results are rebound: nothing exported so far may read them
    position = {n: i for i, n in enumerate(em.needed)}
    here = position[node]
    for v in [fw.out_sink] + fw.state_sinks:
        if v is not None and any(position[c] < here for c in em.consumers.get(v, ())):
            return
    bidirectional.emit_pair(em, pair, match)
    for i, v in enumerate(node.outputs):   # (the caller binds this node's results from outs)
        if v in em.env:
            outs[i] = em.env[v]
    em.routes[fw.node.name] = em.routes[node.name] = "rnn-bidirectional"


def _exported(em, values) -> bool:
    """Whether every one of `values` (None: not needed) has an ONNX name already."""
    return all(v is None or em.lookup(v) is not None for v in values)


def _prune(em, outputs) -> None:
    """Drop the main graph's nodes and initializers nothing reads (the separate ops a fused
    bidirectional op replaced, sorting a fused op does not need)."""
    live = set(outputs)
    kept = []
    for onnx_node in reversed(em.nodes):
        if any(o in live for o in onnx_node.output if o):
            kept.append(onnx_node)
            live.update(i for i in onnx_node.input if i)
            for attr in onnx_node.attribute:
                if attr.type == em.onnx.AttributeProto.GRAPH:
                    live.update(_graph_reads(em.onnx, attr.g))
    em.nodes[:] = reversed(kept)
    em.initializers[:] = [t for t in em.initializers if t.name in live]


def _graph_reads(onnx, graph) -> set:
    """Every name a subgraph's nodes read (its own names and the enclosing graphs')."""
    names = set()
    for n in graph.node:
        names.update(i for i in n.input if i)
        for attr in n.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names |= _graph_reads(onnx, attr.g)
    names.update(o.name for o in graph.output)
    return names


def _unmappable(node) -> str:
    if node.op.name in _TRAINING_OPS or node.op.stateful:
        return (f"to_onnx: {node.describe()} changes variables; ONNX export covers inference "
                "graphs only (fetch the model's outputs, not the training op)")
    hint = " (a gradient op: export the forward graph only)" if node.is_gradient else ""
    if node.op.name in _RANDOM_OPS:
        hint = (" (random numbers: an inference export, to_onnx(inference=True), leaves out "
                "dropout whose keep probability is 1)")
    return f"to_onnx: op '{node.op.name}' has no ONNX mapping: {node.describe()}{hint}"


def _source(em, node):
    if node.op.name == "constant":
        return lambda: em.const(node.op.value, node.name)
    return lambda: _variable(em, node)


def _variable(em, node):
    if em.session is None:
        raise ExportError(f"to_onnx: {node.describe()} is a variable; pass session= (the "
                          "Session holding its value) to export it as an initializer")
    try:
        value = em.session.read_variable(node.name)
    except Exception as exc:  # noqa: BLE001  an uninitialised variable: say which
        raise ExportError(f"to_onnx: cannot read the value of {node.describe()} from the "
                          f"session ({exc}); run the initializer first") from None
    return em.initializer(np.asarray(value, dtype=node.outputs[0].dtype), node.name)


def _fed(feeds) -> set:
    fed = set()
    if feeds is not None:
        for v in (feeds.values() if isinstance(feeds, dict) else feeds):
            if not isinstance(v, Value):
                raise TypeError(f"to_onnx: feeds must be Values, got {type(v).__name__}")
            fed.add(v)
    return fed


def _needed(graph, fetch_values, fed, view):
    """The nodes of the root graph the fetches need (as `view` sees the graph: a removed
    dropout mask needs nothing), in graph order."""
    seen, stack = set(), [view.resolve(v) for v in fetch_values if v not in fed]
    while stack:
        v = stack.pop()
        if v in fed:
            continue
        n = v.node
        if n in seen:
            continue
        seen.add(n)
        stack.extend(u for u in view.inputs(n) if u not in fed)
    return [n for n in graph.nodes if n in seen]


def _value_name(v) -> str:
    return v.node.name if len(v.node.outputs) == 1 else f"{v.node.name}:{v.index}"


def _named_fetches(fetches):
    if isinstance(fetches, dict):
        items = []
        for key, val in fetches.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"to_onnx: output names must be non-empty strings, got {key!r}")
            if isinstance(val, Value):
                items.append((key, val))
                continue
            fields = getattr(val, "_fields", None)
            leaves = flatten(val)
            if fields and len(fields) == len(leaves):
                items += [(f"{key}/{f}", v) for f, v in zip(fields, leaves)]
            else:
                items += [(f"{key}/{i}", v) for i, v in enumerate(leaves)]
    else:
        leaves = [fetches] if isinstance(fetches, Value) else flatten(fetches)
        items = [(_value_name(v) if isinstance(v, Value) else "", v) for v in leaves]
    if not items:
        raise ValueError("to_onnx: nothing to export (no fetches)")
    seen = {}
    for name, v in items:
        if not isinstance(v, Value):
            raise TypeError(f"to_onnx: fetches must be Values, got {type(v).__name__}")
        if v.graph.parent is not None:
            raise ValueError(f"to_onnx: {v!r} is a value inside a loop body; fetch the loop's "
                             "outputs instead")
        if name in seen:
            raise ValueError(f"to_onnx: two outputs are named {name!r}; pass a dict to name "
                             "them")
        seen[name] = v
    return items


def _named_feeds(feeds, needed, fed):
    if feeds is None:
        return [(n.name, n.outputs[0]) for n in needed if n.op.name == "placeholder"]
    if isinstance(feeds, dict):
        items = list(feeds.items())
    else:
        items = [(_value_name(v), v) for v in feeds]
    for name, _ in items:
        if not isinstance(name, str) or not name:
            raise TypeError(f"to_onnx: input names must be non-empty strings, got {name!r}")
    return items


def _input_dims(inputs, needed, dynamic_axes) -> dict:
    """Dims of each input: ints where static, names where unknown (or named by the user).

    Two unknown dims share a name only where the graph makes them equal (ONNX reads one name
    as one size): the time axes of the sequences one loop reads (and of a sequence and its
    transposes, reorderings and reversals: the same input axis); the batch rows beside them,
    joined across loops where one loop's state starts from another's outputs (a decoder
    started from its encoder's state) and with an input's unknown leading dim a loop reads
    (sequence_length); and the dims an elementwise op, a concat or a matmul lines up (x + y,
    concat([x, y], -1): their leading dims; a mask times a loop's outputs: the loop's batch
    and time; see _tied_dims). Such a class is 'time' or 'batch' where it is the only one of
    its kind, else named after its first input (`enc_in_time`, `dec_in_time`); any other
    unknown dim is INPUT_dimK (an unknown leading dim read by no loop: 'batch' where it is the
    only batch-like dim; tied dims that are neither: their first input's INPUT_dimK)."""
    known = dict(inputs)
    for key in dynamic_axes:
        if key not in known:
            raise ValueError(f"to_onnx: dynamic_axes names {key!r}, which is not an input "
                             f"(inputs: {', '.join(known) or 'none'})")
    labels = _dim_classes(inputs, needed)
    out = {}
    for name, v in inputs:
        dims = []
        for axis, d in enumerate(v.shape):
            dims.append(d if d is not None else labels.get((name, axis), f"{name}_dim{axis}"))
        spec = dynamic_axes.get(name, {})
        if isinstance(spec, (list, tuple)):
            spec = {a: f"{name}_dim{a}" for a in spec}
        for axis, label in dict(spec).items():
            if not isinstance(axis, int) or not -len(dims) <= axis < len(dims):
                raise ValueError(f"to_onnx: dynamic_axes[{name!r}] has axis {axis!r}, out of "
                                 f"range for {v.type}")
            dims[axis] = str(label)
        out[name] = dims
    return out


class _Classes:
    """Union-find over hashable keys."""

    def __init__(self):
        self.parent = {}

    def find(self, k):
        self.parent.setdefault(k, k)
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def join(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a


def _dim_classes(inputs, needed) -> dict:
    """{(input name, axis): label} for the unknown input dims that loops read as time or
    batch axes (see _input_dims), and the unknown leading dims of the other inputs."""
    input_of = {v: name for name, v in inputs}
    order = {name: i for i, (name, _) in enumerate(inputs)}
    loops = [n for n in needed if n.op.name == "loop"]
    cls = _Classes()
    kind = {}   # (input, axis) -> "time" / "batch"
    # unknown dims the graph's ops make equal (_tied_dims): tie class -> the input dims in it
    ties = _tied_dims(needed)
    tied = {}
    for name, v in inputs:
        for axis, d in enumerate(v.shape):
            if d is None:
                tied.setdefault(ties.find((v, axis)), []).append((name, axis))
    for loop in loops:
        for (v, a), label in _trace_sequence_axes(loop).items():
            if v.shape[a] is None:
                for key in tied.get(ties.find((v, a)), ()):
                    kind.setdefault(key, label)
                    cls.join((loop, label), key)
    # a loop whose carried inputs derive from another loop's outputs (a decoder started from
    # its encoder's state) runs the same rows; an input's unknown leading dim that a loop
    # reads (the lengths) is the loop's batch
    reach = _loop_ancestors(needed)
    for loop in loops:
        carried = loop.op.in_ports().split(loop.inputs)["carried"]
        for other in {a for v in carried for a in reach.get(v.node, set()) | {v.node}}:
            if other is not loop and other.op.name == "loop":
                cls.join((other, "batch"), (loop, "batch"))
        for n in {a for x in loop.inputs for a in reach.get(x.node, set()) | {x.node}}:
            fed = n.outputs[0] if n.op.name == "placeholder" else None
            if fed in input_of and fed.type.rank >= 1 and fed.shape[0] is None and \
                    kind.get((input_of[fed], 0), "batch") == "batch":
                kind[(input_of[fed], 0)] = "batch"
                cls.join((loop, "batch"), (input_of[fed], 0))
    for name, v in inputs:   # an unknown leading dim no loop reads: one of its own
        if v.type.rank >= 1 and v.shape[0] is None and (name, 0) not in kind:
            kind[(name, 0)] = "batch"
    for keys in tied.values():
        for key in keys[1:]:
            cls.join(keys[0], key)
    members = set(kind) | {k for keys in tied.values() if len(keys) > 1 for k in keys}
    groups = {}
    for key in members:
        groups.setdefault(cls.find(key), []).append(key)
    at = {}   # root -> (its label: the kind of its first key that has one, else None, keys)
    for root, keys in groups.items():
        keys.sort(key=lambda k: (order[k[0]], k[1]))
        at[root] = (next((kind[k] for k in keys if k in kind), None), keys)
    counts = {}
    for label, _ in at.values():
        counts[label] = counts.get(label, 0) + 1
    labels, used = {}, set()
    for label, keys in sorted(at.values(), key=lambda lk: (order[lk[1][0][0]], lk[1][0][1])):
        first, axis = keys[0]
        if label is None:
            name = f"{first}_dim{axis}"
        else:
            name = label if counts[label] == 1 else f"{first}_{label}"
            if name in used:
                name = f"{first}_{label}{axis}"
        used.add(name)
        for key in keys:
            labels[key] = name
    return labels


_SAME_SHAPE = frozenset((
    "neg", "tanh", "sigmoid", "relu", "exp", "log", "sqrt", "abs", "sign", "square",
    "logical_not", "cast", "identity", "contiguous", "stop_gradient", "check_numerics",
    "placeholder_with_default", "softmax", "log_softmax", "zeros_like", "ones_like",
    "permute_rows", "reverse_sequence", "check_sequence_length"))
_BROADCAST = frozenset((
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "less", "less_equal", "greater",
    "greater_equal", "equal", "not_equal", "logical_and", "logical_or", "where", "add_n"))


def _tied_dims(needed) -> _Classes:
    """Union-find over (Value, axis) for the unknown dims of the needed nodes' values that the
    graph makes equal: the axes an elementwise op lines up (NumPy broadcasting, from the last
    axis), the axes of a concat other than its own, a matmul's rows, columns and inner axis,
    the same axis through ops that keep it (unary ops, transposes, expand_dims), and through
    a loop's body (a state's rows are its outputs'; stacked outputs have the steps of the
    sequence they take their length from). Two unknown dims an elementwise op lines up may
    differ where one is 1 at run time (broadcast): the names then say more than the graph,
    and onnxruntime runs the model all the same."""
    ties = _Classes()
    _tie_nodes(needed, ties)
    return ties


def _tie_nodes(nodes, ties) -> None:
    """_tied_dims over `nodes`, into `ties` (a loop: through its body too)."""
    def tie(a, i, b, j):
        if a.shape[i] is None and b.shape[j] is None:
            ties.join((a, i), (b, j))

    for node in nodes:
        name, op = node.op.name, node.op
        if name == "loop":
            _tie_loop(node, ties, tie)
            continue
        if len(node.outputs) != 1 or not node.inputs:
            continue
        out = node.outputs[0]
        r = out.type.rank
        if name in _SAME_SHAPE and node.inputs[0].type.rank == r:
            for i in range(r):
                tie(out, i, node.inputs[0], i)
        elif name in _BROADCAST:
            for x in node.inputs:
                for i in range(x.type.rank):
                    tie(out, r - x.type.rank + i, x, i)
        elif name == "transpose":
            for i, p in enumerate(op.perm):
                tie(out, i, node.inputs[0], p)
        elif name == "matmul":   # [..., M, K] @ [..., K, N]
            a, b = node.inputs
            ra, rb = a.type.rank, b.type.rank
            tie(out, r - 2, a, ra - 2)
            tie(out, r - 1, b, rb - 1)
            tie(a, ra - 1, b, rb - 2)
            for x in (a, b):
                for i in range(x.type.rank - 2):
                    tie(out, r - x.type.rank + i, x, i)
        elif name == "expand_dims":
            new = op.axis % r
            for i in range(r - 1):
                tie(out, i if i < new else i + 1, node.inputs[0], i)
        elif name == "concat":
            axis = op.axis % r
            for x in node.inputs:
                for i in range(r):
                    if i != axis:
                        tie(out, i, x, i)


def _tie_loop(node, ties, tie) -> None:
    """A loop's dims: a carried state's (its input, the body's param and result, the loop's
    output), an invariant's (input and param), a sequence's step (input axis i + 1, param
    axis i), a stacked output's (result axis i, output axis i + 1; its steps those of the
    sequence it takes its length from); then its body's own ties."""
    op = node.op
    body = op.body
    ins, outs = op.in_ports().split(node.inputs), op.out_ports().split(node.outputs)
    params, results = body.params, body.results
    for group in zip(ins["carried"], params.get("carried", []), results.get("carried", []),
                     outs["carried"]):
        for v in group[1:]:
            if v.type.rank == group[0].type.rank:
                for i in range(v.type.rank):
                    tie(group[0], i, v, i)
    for x, p in zip(ins["invariant"], params.get("invariant", [])):
        if x.type.rank == p.type.rank:
            for i in range(p.type.rank):
                tie(x, i, p, i)
    for x, p in zip(ins["sequence"], params.get("sequence", [])):
        if x.type.rank == p.type.rank + 1:
            for i in range(p.type.rank):
                tie(x, i + 1, p, i)
    for out, r in zip(outs["output"], results.get("output", [])):
        if out.type.rank == r.type.rank + 1:
            for i in range(r.type.rank):
                tie(out, i + 1, r, i)
    if op.length_from is not None:
        for out in outs["output"]:
            tie(out, 0, ins["sequence"][op.length_from], 0)
    _tie_nodes(body.nodes, ties)


def _loop_ancestors(needed) -> dict:
    """{node: the loop and placeholder nodes it derives from} over the needed nodes (in
    their topological order)."""
    reach = {}
    for node in needed:
        got = set()
        for x in node.inputs:
            n = x.node
            got |= reach.get(n, set())
            if n.op.name in ("loop", "placeholder"):
                got.add(n)
        reach[node] = got
    return reach


def _trace_sequence_axes(loop) -> dict:
    """{(Value, axis): 'time' / 'batch'} for the values a loop's sequences come from, followed
    back through transposes and row permutations."""
    labels = {}
    for v in loop.op.in_ports().split(loop.inputs)["sequence"]:
        axes = {0: "time", 1: "batch"} if v.type.rank >= 2 else {0: "time"}
        while True:
            for a, label in axes.items():
                labels.setdefault((v, a), label)
            op = v.node.op
            if op.name == "transpose":
                axes = {op.perm[a]: label for a, label in axes.items()}
            elif op.name not in ("permute_rows", "contiguous", "reverse_sequence"):
                break
            v = v.node.inputs[0]
    return labels


def _name_output_dims(onnx, model) -> None:
    """Unknown output dims take the names ONNX's shape inference finds for them (batch,
    time, ...), so a reader of the model sees which input dims they follow."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  naming is a nicety; the checker reports real problems
        return
    for decl, found in zip(model.graph.output, inferred.graph.output):
        dims = decl.type.tensor_type.shape.dim
        new = found.type.tensor_type.shape.dim
        if len(dims) != len(new):
            continue
        for d, n in zip(dims, new):
            if not d.dim_param and not d.HasField("dim_value") and n.dim_param \
                    and not n.dim_param.startswith("unk__"):
                d.dim_param = n.dim_param


def _out_dim(d):
    return None if d is None else int(d)
