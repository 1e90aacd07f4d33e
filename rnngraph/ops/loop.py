"""The loop node: one node whose body (a Graph) runs n times, n known only at run time.

Ports come in named groups (never flat lists plus counts):

  inputs   trip      optional int scalar: the number of steps (or their upper bound with cond)
           rows      optional int vector [L]: how many leading batch rows are active at step t
                     (rows sorted longest first); see ops/loop_rows.py
           carried   initial loop state                       -> body param role "carried"
           invariant values of enclosing graphs the body reads -> body param role "invariant"
           sequence  time-major stacks [L, ...] sliced at step t -> body param role "sequence"
  body     params    step (int32 t), carried, invariant, sequence
           results   cond (optional bool: run this step?), carried (next state),
                     output (per-step values), residual (per-step values saved for the vjp)
  outputs  steps     int32 number of steps run
           carried   final state
           output    stacks [L, ...] (L = length of the `length_from` sequence, else steps);
                     rows of steps that did not run are zero
           residual  stacks [steps, ...] of values the backward loop reads

A chunked loop (attribute `chunk_steps` = C, set by the hoist_sequence, sink_accumulators and
sink_outputs passes under a memory budget) also runs, besides the per-step body, two declared
parts of its body once per chunk of C steps (steps [c*C, min((c+1)*C, n)), whichever way the
loop runs):
  chunk prologue  params "block": rows of the chunk of sequence input `chunk_blocks[i]`
                  [m, ...] (m <= C); results "prologue": [m, ...] values the steps read one row
                  at a time as params "chunk" (the hoisted input projection, say)
  chunk epilogue  params "gathered": the chunk's rows [m, ...] of per-step values, results
                  "gather" (one per param), "chunk_len" (int32 m); results "epilogue": the next
                  value of carried state `epilogue_carried[i]`, run after the chunk's last step
                  (a weight gradient's sum over the chunk added to its accumulator), and
                  "epilogue_rows": the chunk's [m, ...] rows of stacked output
                  `epilogue_outputs[i]`, which the steps then do not compute (y_t = v_t @ W)
Both read the body's invariants and constants; the per-step body reads none of their values.

The vjp is another loop node running in reverse over the residual stacks; see `_LoopVJP`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..errors import GradientError, ShapeError, VerificationError, user_location
from ..ir.graph import Graph, get_default_graph
from ..ir.node import Node
from ..ir.types import TensorType, merge_dim
from ..ir.value import Value
from ..nest import flatten, pack_as
from .base import Op, apply, as_value
from .host_rows import HostRows
from .loop_rows import row_layout
from .misc import stop_gradient
from .rows import PermuteRows
from .sequence import CheckSteps, ReverseSequence
from .shape import Dim, Transpose, concat, expand_dims, getitem

# the layout ops a loop's host output may pass through on the way to a fetch or a later loop
# (their first input; the others are small device values: permutations, lengths): they run on
# the host array
HOST_LAYOUT = (Transpose, PermuteRows, ReverseSequence)

IN_GROUPS = ("trip", "rows", "carried", "invariant", "sequence")
OUT_GROUPS = ("steps", "carried", "output", "residual")


@dataclass
class Ports:
    """Sizes of a node's named port groups; `split` cuts a flat list into a dict by group."""
    groups: tuple
    sizes: dict

    def split(self, flat) -> dict:
        out, i = {}, 0
        for g in self.groups:
            out[g] = list(flat[i:i + self.sizes[g]])
            i += self.sizes[g]
        return out

    def offset(self, group: str) -> int:
        return sum(self.sizes[g] for g in self.groups[:self.groups.index(group)])


class Loop(Op):
    name = "loop"
    foldable = False
    multi_output = True

    def __init__(self, body: Graph, has_trip: bool, reverse: bool = False,
                 length_from: int | None = None, parallel_iterations: int = 10,
                 swap_memory: bool = False, maximum_iterations: int | None = None,
                 active_rows: bool = False, shrink: bool = False, rows_only=(), unzeroed=(),
                 chunk_steps: int | None = None, chunk_blocks=(), epilogue_carried=(),
                 epilogue_outputs=(), host_outputs=()):
        self._body = body
        self.has_trip = has_trip
        self.reverse = reverse
        self.length_from = length_from
        self.parallel_iterations, self.swap_memory = check_loop_args(
            parallel_iterations, swap_memory)
        self.maximum_iterations = maximum_iterations
        self.active_rows = active_rows  # a `rows` input says which rows each step needs
        self.shrink = shrink            # set by the shrink_batch pass: run only those rows
        # also the shrink_batch pass's (declared, printed, saved): indices of the outputs whose
        # finished rows nobody reads (packed as the steps left them), and of those left unzeroed
        self.rows_only = tuple(sorted(int(i) for i in rows_only))
        self.unzeroed = tuple(sorted(int(i) for i in unzeroed))
        # the chunk passes' (declared, printed, saved): steps per chunk, the sequence input of
        # each "block" param of the chunk prologue, the carried index of each epilogue result
        if chunk_steps is not None and (int(chunk_steps) != chunk_steps or chunk_steps < 1):
            raise ValueError(f"chunk_steps must be a positive int, got {chunk_steps!r}")
        self.chunk_steps = None if chunk_steps is None else int(chunk_steps)
        self.chunk_blocks = tuple(int(i) for i in chunk_blocks)
        self.epilogue_carried = tuple(int(i) for i in epilogue_carried)
        self.epilogue_outputs = tuple(int(i) for i in epilogue_outputs)
        # the host_outputs pass's (declared, printed, saved): indices of the stacked outputs
        # written to host memory row by row as the steps make them (only fetches, and later
        # loops through host_rows nodes, read them)
        self.host_outputs = tuple(sorted(int(i) for i in host_outputs))
        self._vjp_cache: dict = {}

    @property
    def body(self) -> Graph:
        return self._body

    def subgraphs(self):
        return [self._body]

    def with_body(self, body: Graph) -> "Loop":
        """This loop (same attributes) over `body`, a copy of its body (see copy_body)."""
        new = copy.copy(self)
        new._body = body
        new._vjp_cache = {}
        return new

    def attrs(self):
        a = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {k: v for k, v in a.items()
                if (v is not None and v is not False and v != ()) or k == "reverse"}

    # --- ports ------------------------------------------------------------------------------
    def in_ports(self) -> Ports:
        p = self._body.params
        return Ports(IN_GROUPS, {"trip": int(self.has_trip), "rows": int(self.active_rows),
                                 "carried": len(p.get("carried", [])),
                                 "invariant": len(p.get("invariant", [])),
                                 "sequence": len(p.get("sequence", []))})

    def out_ports(self) -> Ports:
        r = self._body.results
        return Ports(OUT_GROUPS, {"steps": 1, "carried": len(r["carried"]),
                                  "output": len(r["output"]), "residual": len(r["residual"])})

    def describe_inputs(self, node) -> str:
        parts = self.in_ports().split(node.inputs)
        return " ".join(f"{g}=(" + " ".join(f"%{v.id}" for v in vs) + ")"
                        for g, vs in parts.items() if vs)

    # --- types ------------------------------------------------------------------------------
    def infer(self, *types):
        parts = self.in_ports().split(types)
        params = self._body.params
        for t in parts["rows"]:
            if t.rank != 1 or not np.issubdtype(t.dtype, np.integer):
                raise ShapeError(f"rows must be an int vector [steps], got {t}")
        for group in ("carried", "invariant"):
            for t, p in zip(parts[group], params.get(group, [])):
                _check_same(t, p.type, f"{group} input")
        for t, p in zip(parts["sequence"], params.get("sequence", [])):
            if t.rank < 1:
                raise ShapeError("sequence inputs must have a leading time dimension")
            _check_same(TensorType(t.shape[1:], t.dtype), p.type, "sequence input (one step)")
        results = self._body.results
        for t, r in zip(parts["carried"], results["carried"]):
            _check_same(r.type, t, "body's next carried state vs initial state")
        length = None
        if self.length_from is not None:
            length = parts["sequence"][self.length_from].shape[0]
        out = [TensorType((), np.int32)] + list(parts["carried"])
        out += [TensorType((length,) + r.shape, r.dtype) for r in results["output"]]
        out += [TensorType((None,) + r.shape, r.dtype) for r in results["residual"]]
        return out

    def verify(self, node):
        want = self.infer(*[v.type for v in node.inputs])
        if [str(t) for t in want] != [str(v.type) for v in node.outputs]:
            raise VerificationError(f"{node.name}: outputs do not match its body's results")
        problem = self.chunk_problem() or self.host_problem() or host_readers_problem(node)
        if problem:
            raise VerificationError(f"{node.name}: {problem}")

    def chunk_problem(self) -> str | None:
        """What is inconsistent in the chunk prologue and epilogue (None: nothing)."""
        p, r = self._body.params, self._body.results
        roles = ("block", "chunk", "gathered", "chunk_len")
        parts = [p.get(k, []) for k in roles] + [r.get(k, []) for k in
                                                 ("prologue", "gather", "epilogue")]
        epi_rows = r.get("epilogue_rows", [])
        if self.chunk_steps is None:
            return "chunk params or results in a loop without chunk_steps" \
                if any(parts) or epi_rows else None
        if self.has_cond():
            return "a chunked loop cannot have a condition"
        if not self.steps_known():
            return "a chunked loop needs a step count known before it runs (a trip count, " \
                "length_from or maximum_iterations)"
        blocks, chunks, gathered, lens, pro, gat, epi = parts
        seqs = p.get("sequence", [])
        if len(blocks) != len(self.chunk_blocks) or any(
                i >= len(seqs) for i in self.chunk_blocks):
            return "chunk_blocks does not name a sequence input per block param"
        for b, i in zip(blocks, self.chunk_blocks):
            if not _rows_of(b.type, seqs[i].type):
                return f"block param {b.name} is not a block of sequence input {i}"
        if len(chunks) != len(pro) or len(gathered) != len(gat):
            return "each prologue result needs a chunk param, each gather result a gathered one"
        for rows, one in list(zip(pro, chunks)) + list(zip(gathered, gat)):
            if not _rows_of(rows.type, one.type):
                return f"{rows.name} is not a block of rows of {one.name}"
        if len(lens) > 1 or any(v.type.rank or v.dtype != np.int32 for v in lens):
            return "at most one chunk_len param, an int32 scalar"
        if not _names_each(self.epilogue_carried, epi, r["carried"], _compatible):
            return "epilogue_carried does not name a carried value per epilogue result"
        if not _names_each(self.epilogue_outputs, epi_rows, r["output"], _rows_of):
            return "epilogue_outputs does not name a stacked output per epilogue_rows result"
        return None

    def host_problem(self) -> str | None:
        """What is wrong with host_outputs (None: nothing): each names a stacked output, once,
        that the steps write (not the chunk epilogue), of a loop without a condition."""
        if not self.host_outputs:
            return None
        n = len(self._body.results["output"])
        if len(set(self.host_outputs)) != len(self.host_outputs) or \
                any(not 0 <= i < n for i in self.host_outputs):
            return f"host_outputs {self.host_outputs} does not name distinct stacked outputs " \
                f"(the loop has {n})"
        if set(self.host_outputs) & set(self.epilogue_outputs):
            return "host_outputs names an output the chunk epilogue writes"
        if not self.steps_known():
            return "a loop writing outputs to host memory needs a step count known before " \
                "it runs (a trip count, length_from or maximum_iterations) and no condition"
        return None

    def steps_known(self) -> bool:
        """The number of steps is known before the loop runs: no condition, and a trip count,
        a sequence length or maximum_iterations."""
        return not self.has_cond() and (self.has_trip or self.length_from is not None or
                                        self.maximum_iterations is not None)

    def has_cond(self) -> bool:
        return bool(self._body.results.get("cond"))

    def chunkable(self, chunk_steps: int | None) -> bool:
        """A pass may put work into chunks of `chunk_steps` (None: the whole sequence): no
        condition (the steps are known in advance) and no other chunk size already chosen."""
        return not self.has_cond() and self.chunk_steps in (None, chunk_steps)

    def flops(self, node) -> int:
        return sum(n.op.flops(n) for n in self._body.nodes)

    # --- execution ----------------------------------------------------------------------------

    # --- reverse mode -------------------------------------------------------------------------
    def vjp(self, node, *gs):
        raise GradientError("a loop's gradient is a reverse loop that rnngraph.autodiff builds "
                            f"(rg.gradients), not a rule of the op (node {node.describe()})")


def _compatible(a: TensorType, b: TensorType) -> bool:
    """Same dtype and rank, and no dim known on both sides that differs."""
    return a.dtype == b.dtype and a.rank == b.rank and all(
        x is None or y is None or x == y for x, y in zip(a.shape, b.shape))


def _names_each(index, results, targets, fits) -> bool:
    """Does `index` name a distinct one of `targets` for each of `results`, whose type `fits`
    (fits(result type, target type))?"""
    return len(index) == len(results) == len(set(index)) and all(
        i < len(targets) and fits(results[j].type, targets[i].type) for j, i in enumerate(index))


def _rows_of(block: TensorType, row: TensorType) -> bool:
    """`block` can hold rows of type `row`: [m, *row.shape], of its dtype."""
    return block.rank == row.rank + 1 and _compatible(
        TensorType(tuple(block.shape[1:]), block.dtype), row)


def _check_same(got: TensorType, want: TensorType, what: str):
    if got.dtype != want.dtype or got.rank != want.rank:
        raise ShapeError(f"{what}: {got} does not match {want}")
    for a, b in zip(got.shape, want.shape):
        merge_dim(a, b, f"{what}: {got} vs {want}")


# --- building -------------------------------------------------------------------------------
MAX_PARALLEL_ITERATIONS = 2**31 - 1   # (the saved file's bound: io/schema.py's "loop" schema)


def check_loop_args(parallel_iterations, swap_memory, what: str = "loop") -> tuple[int, bool]:
    """(parallel_iterations, swap_memory) as a Python int and bool, checked as TF1 checks them
    and as the saved file's schema does: parallel_iterations an int (numpy ints too, bools not)
    in [1, 2**31 - 1], swap_memory a bool (np.bool_ too). A wrong type is a TypeError, a value
    out of range a ValueError, naming `what` (the builder) and the user's line. The builders
    call it before they build anything, so a refused argument leaves the graph unchanged."""
    pi = parallel_iterations
    if isinstance(pi, (bool, np.bool_)) or not isinstance(pi, (int, np.integer)):
        raise TypeError(f"{what}: parallel_iterations must be an int, got {type(pi).__name__} "
                        f"{pi!r} (at {user_location()})")
    if not 1 <= int(pi) <= MAX_PARALLEL_ITERATIONS:
        raise ValueError(f"{what}: parallel_iterations must be a positive int (at most "
                         f"{MAX_PARALLEL_ITERATIONS}), got {int(pi)} (at {user_location()})")
    if not isinstance(swap_memory, (bool, np.bool_)):
        raise TypeError(f"{what}: swap_memory must be True or False, got "
                        f"{type(swap_memory).__name__} {swap_memory!r} (at {user_location()})")
    return int(pi), bool(swap_memory)


def new_body(name: str) -> Graph:
    outer = get_default_graph()
    body = Graph(parent=outer, name=name)
    body._scope = list(outer._scope)  # body nodes are named under the loop's scope
    body.results = {"cond": [], "carried": [], "output": [], "residual": []}
    return body


def build_loop(step_fn, carried, sequences=(), trip=None, *, cond_fn=None, reverse=False,
               length_from=None, parallel_iterations=10, swap_memory=False,
               maximum_iterations=None, rows=None, name="while"):
    """Trace `step_fn(t, carried, xs) -> (new_carried, outputs)` into a body and add the loop.

    `carried`: list of Values; `sequences`: list of time-major Values sliced at step t;
    `trip`: int scalar Value (or None when the sequences' length or `cond_fn` bounds the loop);
    `cond_fn(t, carried) -> bool scalar` stops the loop the first time it is false.
    `rows`: int vector [L] of active row counts (rows sorted longest first; the step function
    must itself mask the rows past the count): the body is traced with the batch dimension of
    carried values and sequence slices left open, and if it keeps rows apart the loop may run
    each step on the active rows only (ops/loop_rows.py).
    Returns (steps, final_carried, stacked_outputs).
    """
    parallel_iterations, swap_memory = check_loop_args(parallel_iterations, swap_memory, name)
    carried = [as_value(c) for c in carried]
    sequences = [as_value(s) for s in sequences]
    graph = get_default_graph()
    scope = graph.current_scope()
    body = new_body(f"{scope}/{name}" if scope else name)
    open_rows = _open_batch if rows is not None else (lambda t: t)
    with body.as_default():
        t = body.add_param("step", TensorType((), np.int32), "t")
        c_params = [body.add_param("carried", open_rows(c.type), f"carried_{i}")
                    for i, c in enumerate(carried)]
        x_params = [body.add_param("sequence", open_rows(TensorType(s.shape[1:], s.dtype)),
                                   f"x_{i}") for i, s in enumerate(sequences)]
        with body.name_scope(name):
            if cond_fn is not None:
                ok = body.capture(as_value(cond_fn(t, list(c_params))))
                if ok.dtype != np.bool_ or ok.shape != ():
                    raise TypeError(f"the loop condition must return a bool scalar, got {ok.type}")
                body.results["cond"] = [ok]
            new_carried, outputs = step_fn(t, list(c_params), list(x_params))
        # (a value of an enclosing graph returned unchanged is read as a loop invariant)
        new_carried = [body.capture(as_value(v)) for v in new_carried]
        outputs = [body.capture(as_value(v)) for v in outputs]
    if len(new_carried) != len(carried):
        raise ValueError(f"the loop body returned {len(new_carried)} state values for "
                         f"{len(carried)} loop variables")
    for i, (c, n) in enumerate(zip(carried, new_carried)):
        if c.dtype != n.dtype or c.type.rank != n.type.rank:
            raise TypeError(f"loop variable {i} enters as {c.type} but the body returns {n.type}; "
                            "its type must not change between steps")
    _refuse_variable_writes(body)
    body.results["carried"] = new_carried
    body.results["output"] = outputs
    # the body may have captured outer values after the params were made: they are invariants
    invariants = list(body.captures.keys())
    if rows is not None:
        if row_layout(body, strict=True) is None:
            rows = None  # the body mixes rows: every step runs on all of them (still correct)
    op = Loop(body, trip is not None, reverse=reverse,
              length_from=(0 if sequences else None) if length_from is None else length_from,
              parallel_iterations=parallel_iterations, swap_memory=swap_memory,
              maximum_iterations=maximum_iterations, active_rows=rows is not None)
    inputs = ([as_value(trip)] if trip is not None else []) + \
        ([as_value(rows)] if rows is not None else []) + carried + invariants + sequences
    outs = apply(op, inputs, name=name)
    parts = op.out_ports().split(outs)
    return parts["steps"][0], parts["carried"], parts["output"]


_WRITES = ("assign", "init_variables", "init_listed_variables")   # ops that write variables


def _refuse_variable_writes(body: Graph) -> None:
    """NotImplementedError for an op writing a variable inside a loop body (TF1 runs it once per
    step; rnngraph applies a run's writes once, so the variable would end wrong, silently)."""
    for n in body.nodes:
        if n.op.name in _WRITES:
            outer = {p: o for o, p in body.captures.items()}   # (the variable, not its param)
            var = f"'{outer.get(n.inputs[0], n.inputs[0]).name}'" if n.inputs else "variables"
            raise NotImplementedError(
                f"{n.op.name} '{n.name}' (built at {n.location}) writes {var} inside a loop "
                "body: variables are written once per run, not once per step, so it would not "
                "run once per step as in TF1; carry the value as a loop variable instead (and "
                "assign the loop's result after it)")
        for inner in n.op.subgraphs():
            _refuse_variable_writes(inner)


def copy_body(body: Graph, parent: Graph, vmap: dict | None = None) -> tuple[Graph, dict]:
    """A copy of loop body `body` (params, captures, results; nested loops over copies of their
    bodies) whose parent is `parent`, and the map old Value -> new Value (`vmap`, extended).
    Lists are the copy's own: results added to one body are not added to the other."""
    vmap = {} if vmap is None else vmap
    new = Graph(parent=parent, name=body.name)
    new._scope = list(body._scope)
    new._name_counts = dict(body._name_counts)
    for n in body.nodes:
        op = n.op
        if isinstance(op, Loop):
            op = op.with_body(copy_body(op.body, new, vmap)[0])
        node = Node(new, op, [vmap[v] for v in n.inputs], n.name, n.location)
        node.is_gradient, node.device = n.is_gradient, n.device
        for v in n.outputs:
            vmap[v] = node._add_output(v.type)
        new.nodes.append(node)
        new._by_name[node.name] = node
    new.params = {role: [vmap[p] for p in ps] for role, ps in body.params.items()}
    new.captures = {vmap.get(o, o): vmap[p] for o, p in body.captures.items()}
    new.results = {role: [vmap[v] for v in vs] for role, vs in body.results.items()}
    new.collections = {k: list(v) for k, v in body.collections.items()}
    return new, vmap


def _open_batch(t: TensorType) -> TensorType:
    """The type with its leading (batch) dimension left unknown."""
    return TensorType((None,) + t.shape[1:], t.dtype) if t.rank >= 1 else t


def prune_body(body: Graph, keep_params: tuple = ()) -> None:
    """Drop body nodes no result needs, and unused sequence/invariant params (so the loop does
    not slice or capture them). Carried and step params stay: the ports must line up."""
    needed = set()
    stack = [v.node for vals in body.results.values() for v in vals]
    stack += [v.node for v in keep_params]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        stack.extend(v.node for v in n.inputs)
    for role in ("step", "carried"):
        needed.update(v.node for v in body.params.get(role, []))
    # a length_from sequence param must stay even if unused; callers pass it in keep_params
    doomed = {n for n in body.nodes if n not in needed}
    if not doomed:
        return
    body.remove_nodes(doomed)
    for role in ("sequence", "invariant"):
        if role in body.params:
            body.params[role] = [v for v in body.params[role] if v.node not in doomed]
    body.captures = {o: p for o, p in body.captures.items() if p.node not in doomed}


def _flatten_vars(loop_vars):
    """Leaves of a (nested) structure of loop variables, and a function rebuilding it."""
    flat = [as_value(v) for v in flatten(loop_vars)]
    return flat, lambda vals: pack_as(loop_vars, vals)


def while_loop(cond, body, loop_vars, maximum_iterations=None, parallel_iterations=10,
               swap_memory=False, name="while", return_same_structure=False):
    """Repeat `loop_vars = body(*loop_vars)` while `cond(*loop_vars)` is true (tf.while_loop).

    `loop_vars` is a Value or a list/tuple/namedtuple of Values; `body` returns the same
    structure with the same dtypes and ranks. `maximum_iterations` bounds the steps.
    Returns the final loop_vars in their structure; as in TF1 (return_same_structure=False),
    a list/tuple holding a single Value gives that Value itself (`while_loop(c, b, [i])` is a
    Value); `return_same_structure=True` keeps the list.
    Differentiable: the gradient is a loop running backwards over saved per-step values.
    """
    if not callable(cond) or not callable(body):
        raise TypeError("while_loop(cond, body, loop_vars): cond and body must be callables")
    check_loop_args(parallel_iterations, swap_memory, "while_loop")
    if not isinstance(return_same_structure, (bool, np.bool_)):
        raise TypeError(f"while_loop: return_same_structure must be a bool, got "
                        f"{type(return_same_structure).__name__} {return_same_structure!r} "
                        f"(at {user_location()})")
    flat, rebuild = _flatten_vars(loop_vars)
    if not flat:
        raise ValueError("while_loop needs at least one loop variable")

    spread = isinstance(loop_vars, (list, tuple))  # namedtuples too, as tf.while_loop does

    def call(fn, carried):  # TF passes a list/tuple of loop vars as separate arguments
        packed = rebuild(carried)
        return fn(*packed) if spread else fn(packed)

    def step(t, carried, xs):
        new_flat, _ = _flatten_vars(call(body, carried))
        return new_flat, []

    trip = None
    if maximum_iterations is not None:
        trip = as_value(maximum_iterations, np.int32)
    _, final, _ = build_loop(step, flat, (), trip, cond_fn=lambda t, c: call(cond, c),
                             parallel_iterations=parallel_iterations, swap_memory=swap_memory,
                             name=name)
    result = rebuild(final)
    if spread and len(final) == 1 and not return_same_structure:
        return result[0]  # TF1: packed_exit_vars[0] when there is one (flat) loop variable
    return result


def scan(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
         swap_memory=False, infer_shape=True, reverse=False, name=None):
    """tf.scan: `a = fn(a, x)` for each x along the first axis of `elems`; the stacked a's.

    `elems` is a Value or a nested list/tuple/namedtuple of Values with the same first
    dimension n; `fn(a, x)` receives x in that structure and an accumulator `a` in the
    structure of `initializer`, and returns a new accumulator of that structure and dtypes.
    Without an initializer the first element of elems (the last, with `reverse`) is the first
    accumulator and the first output, and fn runs over the rest (its result then has elems'
    structure). Returns, in the accumulator's structure, Values of shape [n] + its shape,
    output i being the accumulator after elems[i] (in elems' order with `reverse` too).
    `back_prop=False` stops gradients through the outputs. `parallel_iterations` and
    `infer_shape` are accepted for TF1 compatibility (shapes are always inferred);
    `swap_memory` as in while_loop. For JAX's form (fn returns a carry and an output), see
    lax_scan.
    """
    if not callable(fn):
        raise TypeError(f"scan(fn, elems, ...): fn must be a callable, got {type(fn).__name__}")
    check_loop_args(parallel_iterations, swap_memory, "scan")
    leaves = [as_value(e) for e in flatten(elems)]
    if not leaves:
        raise ValueError("scan needs at least one tensor in elems")
    for e in leaves:
        if len(e.shape) == 0:
            raise ValueError(f"scan: elems must have a first dimension to scan over, got the "
                             f"scalar {e.node.name}")
    if initializer is None:
        structure = elems
        init = [getitem(e, -1 if reverse else 0) for e in leaves]
        xs = [getitem(e, slice(None, -1) if reverse else slice(1, None)) for e in leaves]
    else:
        structure = initializer
        init = [as_value(v) for v in flatten(initializer)]
        xs = leaves

    def step(t, carried, x_slices):
        new = [as_value(v) for v in flatten(fn(pack_as(structure, carried),
                                                 pack_as(elems, x_slices)))]
        if len(new) != len(carried):
            raise ValueError(f"scan: fn returned {len(new)} tensors for an accumulator of "
                             f"{len(carried)} (it must return the structure of "
                             f"{'elems' if initializer is None else 'initializer'})")
        return new, new

    _, _, ys = build_loop(step, init, xs, None, reverse=reverse,
                          parallel_iterations=parallel_iterations, swap_memory=swap_memory,
                          name=name or "scan")
    if initializer is None:   # the first accumulator is the first output
        ys = [concat([y, expand_dims(a, 0)] if reverse else [expand_dims(a, 0), y], axis=0)
              for a, y in zip(init, ys)]
    if not back_prop:
        ys = [stop_gradient(y) for y in ys]
    return pack_as(structure, ys)


def lax_scan(fn, init, xs, reverse=False, length=None, name="scan"):
    """jax.lax.scan's form: `fn(carry, x_t) -> (carry, y_t)` over time-major `xs`.

    `init` and `xs` are each a Value or a list of Values, and `fn` receives them in the same
    form (one slice x_t, or a list of slices); `y_t` is a Value or a list of Values. Returns
    (final_carry, stacked_ys), each shaped like what `fn` returned.
    """
    one_carry, one_x = isinstance(init, Value), isinstance(xs, Value)
    xs = [xs] if one_x else list(xs)
    one_y = False

    def step(t, carried, x_slices):
        nonlocal one_y
        new, ys = fn(carried[0] if one_carry else list(carried),
                     x_slices[0] if one_x else list(x_slices))
        one_y = isinstance(ys, Value)
        return [new] if isinstance(new, Value) else list(new), [ys] if one_y else list(ys)

    _, final, ys = build_loop(step, [init] if one_carry else list(init), xs, length,
                              reverse=reverse, name=name)
    return final[0] if one_carry else final, ys[0] if one_y else ys


def host_chain(v, readers: dict, loops: list | None = None) -> tuple:
    """(the values v reaches through HOST_LAYOUT ops reading them as their first input only,
    v first; the first other reader met, or None) for `readers`: Value -> reading nodes.
    Nodes reading a size (dim; check_steps' shape inputs) are passed over (the host array
    has its size), and host_rows nodes taking the rows as they are (time axis 0, no row
    order) end a path: loops read a host array's rows through them (FedRows). Given a list
    `loops`, a loop reading a value as a sequence input alone ends a path too: (value, loop
    node) is appended for each, and (value, None) for each host_rows node met."""
    todo, seen = [v], []
    while todo:
        u = todo.pop()
        if any(u is x for x in seen):
            continue
        seen.append(u)
        for r in readers.get(u, []):
            if reads_size(r, u):
                continue
            if host_rows_of(r, u):
                if loops is not None:
                    loops.append((u, None))
                continue
            if loops is not None and reads_as_sequence(r, u):
                loops.append((u, r))
                continue
            if not isinstance(r.op, HOST_LAYOUT) or r.inputs[0] is not u or \
                    any(x is u for x in r.inputs[1:]):
                return seen, r
            todo.extend(r.outputs)
    return seen, None


def reads_as_sequence(node, v) -> bool:
    """Does loop `node` read `v` as sequence inputs only (no other port)?"""
    if not isinstance(node.op, Loop):
        return False
    parts = node.op.in_ports().split(node.inputs)
    return any(x is v for x in parts.get("sequence", [])) and not any(
        x is v for role, xs in parts.items() if role != "sequence" for x in xs)


def reads_size(node, u) -> bool:
    """Does `node` read value `u` for its size alone (a host array will do)?"""
    return isinstance(node.op, Dim) or (isinstance(node.op, CheckSteps) and
                                        node.inputs[0] is not u)


def host_rows_of(node, u) -> bool:
    """Is `node` a host_rows node taking the rows of `u` as they are (time axis 0, no row
    order): on a host array, a handle loops read rows through?"""
    return isinstance(node.op, HostRows) and node.op.time_axis == 0 and \
        len(node.inputs) == 1 and node.inputs[0] is u


def host_readers_problem(node) -> str | None:
    """What reads a host output of loop `node` that cannot (None: nothing): see host_chain."""
    marked = getattr(node.op, "host_outputs", ())
    if not marked or node.graph is None:
        return None
    if node.graph.parent is not None:   # (its outputs are stacked by the loop around it)
        return "a loop inside a loop body cannot write its outputs to host memory"
    outs = node.op.out_ports().split(node.outputs)["output"]
    readers: dict = {}
    for n in node.graph.nodes:
        for v in n.inputs:
            readers.setdefault(v, []).append(n)
    for i in marked:
        _, bad = host_chain(outs[i], readers) if i < len(outs) else ((), None)
        if bad is not None:
            return f"host output {outs[i].name} reaches {bad.op.name} node {bad.name}, which " \
                "cannot read host memory (only transpose, permute_rows, reverse_sequence, " \
                "host_rows and the size readers dim and check_steps may)"
    return None
