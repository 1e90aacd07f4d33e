"""The declared attributes of every op a file may hold: name, type and range, written out per op.

Loading checks each node's attributes against its op's entry before the op is constructed
(codec.make_op): an attribute the entry does not declare, a missing one, a value of another
type, out of range, or a string outside its fixed choices is refused. The table is written by
hand from each op's constructor; it is never inferred from what a file contains, so a file can
only give an op values of the kinds the op was built for (numbers, flags, dtype names from a
fixed set, shapes...), never text that a code generator could paste into source.

    attrs_problem("argmax", {"axis": 1})         # None: fits
    attrs_problem("add", {"kernel": "..."})      # "unknown attribute 'kernel' (none is declared)"
    attrs_problem("fused", {})                   # "missing attribute 'n_inputs'"

Only one attribute holds free text: check_numerics' `message`, shown in its error message and
never formatted into generated code (checks.py). Ops listed in REFUSED are never loaded.

A fused node (ops/fused.py, made by the compiler's fuse pass) holds a program of other ops:

    {"n_inputs": 2, "instrs": [["column_block", {"dict": {"start": 0, "stop": 5}}, [0]],
                               ["sigmoid", {"dict": {}}, [2]], ["mul", {"dict": {}}, [3, 1]]],
     "exports": [4], "origins": [["rnn/while/split/block_0", "model.py:12"], ...]}

Each instruction names one of FUSED_OPS (fusible elementwise ops, and concat as the join the
pass makes), its attributes checked by that op's own entry here; refs are ints naming an input
(0..n_inputs-1) or an earlier instruction (n_inputs + its index); exports name instructions;
origins are (node name, location) pairs checked like a node's. The codec then builds each
inner op like a node's op (codec.make_op) and derives every type from the inner ops' rules.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..ir import device as device_spec
from ..ops import initializers as inits

MAX_RANK = 64                  # NumPy 2's limit on dimensions
MAX_DIM = 2**62                # a size or index that fits int64 with room for sums
MAX_PARTS = 2**16              # counts of inputs, parts and sequence positions
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128")
PARAM_ROLES = ("step", "carried", "invariant", "sequence",
               "block", "chunk", "gathered", "chunk_len")   # (the last four: chunked loops)
RESULT_ROLES = ("cond", "carried", "output", "residual", "prologue", "gather", "epilogue",
                "epilogue_rows")
# node names as Graph.unique_name allows them (scopes joined by "/")
NAME_RE = re.compile(r"[A-Za-z0-9_.\-/]+")
MAX_NAME = 1000
MAX_TEXT = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters other than tab and newline


# --- value specs ----------------------------------------------------------------------------------
class Spec:
    """The declared form of one attribute value: `fits(x)` says whether x has it, `what`
    describes it for the error message."""
    what = "a value"

    def fits(self, x) -> bool:
        raise NotImplementedError


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


class Int(Spec):
    def __init__(self, lo: int = -MAX_DIM, hi: int = MAX_DIM):
        self.lo, self.hi = lo, hi
        self.what = f"an int in [{lo}, {hi}]"

    def fits(self, x) -> bool:
        return _is_int(x) and self.lo <= int(x) <= self.hi


class Float(Spec):
    def __init__(self, lo: float = -math.inf, hi: float = math.inf, finite: bool = True):
        self.lo, self.hi, self.finite = lo, hi, finite
        self.what = ("a finite float" if finite else "a float") + \
            (f" in [{lo}, {hi}]" if (lo, hi) != (-math.inf, math.inf) else "")

    def fits(self, x) -> bool:
        if type(x) is not float:
            return False
        if math.isnan(x) or math.isinf(x):
            return not self.finite
        return self.lo <= x <= self.hi


class Bool(Spec):
    what = "a bool"

    def fits(self, x) -> bool:
        return type(x) is bool


class Choice(Spec):
    """A string from a fixed set."""

    def __init__(self, *choices: str):
        self.choices = frozenset(choices)
        self.what = "one of " + ", ".join(repr(c) for c in choices)

    def fits(self, x) -> bool:
        return type(x) is str and x in self.choices


class Text(Spec):
    """Free text for messages: bounded, no control characters but tab and newline."""
    what = f"a text of at most {MAX_TEXT} characters without control characters"

    def fits(self, x) -> bool:
        return type(x) is str and len(x) <= MAX_TEXT and not _CONTROL.search(x)


class Tuple(Spec):
    """A tuple (a JSON list in the file) of items of one spec."""

    def __init__(self, item: Spec, min_len: int = 0, max_len: int = MAX_RANK):
        self.item, self.min_len, self.max_len = item, min_len, max_len
        self.what = f"a list of {min_len} to {max_len} items, each {item.what}"

    def fits(self, x) -> bool:
        return type(x) is tuple and self.min_len <= len(x) <= self.max_len and \
            all(self.item.fits(v) for v in x)


class Fixed(Spec):
    """A tuple of a fixed length whose items have their own specs."""

    def __init__(self, *items: Spec, what: str):
        self.items, self.what = items, what

    def fits(self, x) -> bool:
        return type(x) is tuple and len(x) == len(self.items) and \
            all(s.fits(v) for s, v in zip(self.items, x))


class Either(Spec):
    def __init__(self, *specs: Spec):
        self.specs = specs
        self.what = " or ".join(s.what for s in specs)

    def fits(self, x) -> bool:
        return any(s.fits(x) for s in self.specs)


class Null(Spec):
    what = "null"

    def fits(self, x) -> bool:
        return x is None


def optional(spec: Spec) -> Spec:
    return Either(Null(), spec)


class Array(Spec):
    what = "a stored numeric array"

    def fits(self, x) -> bool:
        return type(x) is np.ndarray and x.dtype.kind in "biufc"


class Numbers(Spec):
    """A number, or nested lists of numbers (a constant initializer's value)."""
    what = "a number or nested lists of numbers"

    def fits(self, x, depth: int = 0) -> bool:
        if type(x) is list:
            return depth < MAX_RANK and all(self.fits(v, depth + 1) for v in x)
        return type(x) in (bool, int, float)


class InitializerSpec(Spec):
    """One of rnngraph's initializers, its parameters as INITIALIZERS declares them."""
    what = "an initializer (" + ", ".join(sorted(inits.KINDS)) + ")"

    def fits(self, x) -> bool:
        kind = getattr(type(x), "kind", None)
        return kind in INITIALIZERS and inits.KINDS.get(kind) is type(x) and \
            params_problem(INITIALIZERS[kind], x.params()) is None


AXIS = Int(-MAX_RANK, MAX_RANK - 1)
DIM = Int(0, MAX_DIM)
COUNT = Int(0, MAX_PARTS)
DTYPE = Choice(*DTYPES)
SHAPE = Tuple(optional(DIM))           # None: a dimension unknown until run time
FULL_SHAPE = Tuple(DIM)
INDEX = Int(-MAX_DIM, MAX_DIM)
STEP = Either(Int(-MAX_DIM, -1), Int(1, MAX_DIM))
SLICE = Fixed(Choice("slice"), optional(INDEX), optional(INDEX), optional(STEP),
              what="['slice', start, stop, step] (ints or null, step not 0)")
INDEX_KEY = Tuple(Either(INDEX, Choice("newaxis", "..."), SLICE))
SEED = Int(0, 2**64 - 1)               # random ops' seeds (ops/random.py)


# --- op entries -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpSchema:
    """Every attribute an op has (all of them are saved, so all are required), whether it takes
    a loop body, how the saved form becomes constructor arguments where it differs, and a
    check across attributes."""
    attrs: dict = field(default_factory=dict)
    body: bool = False
    to_args: Callable[[dict], dict] | None = None
    rule: Callable[[dict], str | None] | None = None


NONE = OpSchema()


def _key_args(attrs: dict) -> dict:
    """getitem's saved key (ints, ['slice', a, b, c], 'newaxis', '...') as Python indices."""
    def one(k):
        if isinstance(k, tuple):
            return slice(*k[1:])
        return {"newaxis": None, "...": Ellipsis}.get(k, k) if isinstance(k, str) else k
    return {"key": tuple(one(k) for k in attrs["key"])}


def _one_ellipsis(attrs: dict) -> str | None:
    return "key: at most one '...'" if attrs["key"].count("...") > 1 else None


def _block(attrs: dict) -> str | None:
    return "start must not exceed stop" if attrs["start"] > attrs["stop"] else None


def _contract_parts(attrs: dict) -> str | None:
    p = attrs["parts"]
    if any(j >= p for j in attrs["shifted"] + attrs["packed_parts"]):
        return f"shifted and packed_parts must name parts below parts ({p})"
    return None


def _chunked(attrs: dict) -> str | None:
    if attrs["chunk_steps"] is None and (attrs["chunk_blocks"] or attrs["epilogue_carried"]
                                         or attrs["epilogue_outputs"]):
        return "chunk_blocks, epilogue_carried and epilogue_outputs need chunk_steps"
    return None


_GETITEM = OpSchema({"key": INDEX_KEY}, to_args=_key_args, rule=_one_ellipsis)
_REDUCE = OpSchema({"axis": optional(Tuple(AXIS, min_len=1)), "keepdims": Bool()})

SCHEMAS: dict[str, OpSchema] = {
    # ops/elementwise.py
    "abs": NONE, "add": NONE, "broadcast_like": NONE, "cast": OpSchema({"dtype": DTYPE}),
    "div": NONE, "equal": NONE, "exp": NONE, "floordiv": NONE, "floormod": NONE,
    "greater": NONE, "greater_equal": NONE,
    "less": NONE, "less_equal": NONE, "log": NONE, "logical_and": NONE, "logical_not": NONE,
    "logical_or": NONE, "maximum": NONE, "minimum": NONE, "mul": NONE, "neg": NONE,
    "not_equal": NONE, "ones_like": NONE, "pow": NONE, "relu": NONE, "sigmoid": NONE,
    "sign": NONE, "sqrt": NONE, "square": NONE, "sub": NONE,
    "sum_to": OpSchema({"lead": Int(0, MAX_RANK), "axes": Tuple(Int(0, MAX_RANK - 1))}),
    "sum_to_like": NONE, "tanh": NONE, "where": NONE, "zeros_like": NONE,
    # ops/reduce.py
    "add_n": NONE, "argmax": OpSchema({"axis": AXIS}), "argmin": OpSchema({"axis": AXIS}),
    "reduce_max": _REDUCE, "reduce_mean": _REDUCE, "reduce_sum": _REDUCE,
    "reduce_min": _REDUCE, "reduce_prod": _REDUCE, "reduce_logsumexp": _REDUCE,
    "reduce_any": _REDUCE, "reduce_all": _REDUCE,
    "reduce_prod_others": OpSchema({"axis": optional(Tuple(AXIS, min_len=1))}),
    "reduced_count": OpSchema({"axis": Tuple(AXIS)}),
    # ops/shape.py
    "broadcast_to": OpSchema({"shape": FULL_SHAPE}),
    "column_block": OpSchema({"start": DIM, "stop": DIM}, rule=_block),
    "concat": OpSchema({"axis": AXIS}), "concat_grad": OpSchema({"axis": AXIS}),
    "contiguous": NONE, "dim": OpSchema({"axis": AXIS}),
    "expand_dims": OpSchema({"axis": AXIS}),
    "getitem": _GETITEM, "getitem_grad": _GETITEM,
    "reshape": OpSchema({"shape": Tuple(Int(-1, MAX_DIM))}), "reshape_like": NONE,
    # ops/tf1_array.py
    "tile": OpSchema({"multiples": Tuple(DIM)}), "tile_grad": OpSchema({"multiples": Tuple(DIM)}),
    "pad": OpSchema({"paddings": Tuple(Fixed(DIM, DIM, what="[before, after]")),
                     "mode": Choice("CONSTANT", "REFLECT", "SYMMETRIC"),
                     "constant_values": Either(Bool(), Int(-2**63, 2**64 - 1),
                                               Float(finite=False))}),
    "pad_grad": OpSchema({"paddings": Tuple(Fixed(DIM, DIM, what="[before, after]")),
                          "mode": Choice("REFLECT", "SYMMETRIC")}),
    "slice": OpSchema({"begin": Tuple(DIM), "size": Tuple(Int(-1, MAX_DIM))}),
    "reshape_dynamic": OpSchema({"shape": Tuple(Either(
        Int(-1, MAX_DIM), Fixed(Choice("dim"), COUNT, AXIS, what="['dim', input, axis]"),
        Fixed(Choice("value"), COUNT, what="['value', input]"),
        Fixed(Choice("vector"), COUNT, DIM, what="['vector', input, entry]")))}),
    # ops/topk.py (tf.nn.top_k)
    "top_k_indices": OpSchema({"k": DIM}), "gather_last": NONE, "gather_last_grad": NONE,
    # ops/tf1_index.py (tf.boolean_mask, gather_nd, scatter_nd, cumsum, reverse)
    "boolean_mask": OpSchema({"axis": Int(0, MAX_RANK - 1)}),
    "boolean_mask_grad": OpSchema({"axis": Int(0, MAX_RANK - 1)}),
    "gather_nd": NONE, "gather_nd_grad": NONE, "scatter_nd": OpSchema({"shape": SHAPE}),
    "cumsum": OpSchema({"axis": AXIS, "exclusive": Bool(), "reverse": Bool()}),
    "reverse": OpSchema({"axis": Tuple(AXIS)}),
    "shape": NONE,
    "split": OpSchema({"num_or_size_splits": Either(Int(1, MAX_DIM),
                                                    Tuple(Int(-1, MAX_DIM), min_len=1,
                                                          max_len=MAX_PARTS)),
                       "axis": AXIS}),
    "squeeze": OpSchema({"axis": Tuple(AXIS)}), "stack": OpSchema({"axis": AXIS}),
    "transpose": OpSchema({"perm": Tuple(Int(0, MAX_RANK - 1))}),
    "unstack": OpSchema({"num": DIM, "axis": AXIS}),
    # ops/sources.py
    "assign": NONE, "constant": OpSchema({"value": Array()}), "init_variables": NONE,
    "param": OpSchema({"role": Choice(*PARAM_ROLES)}),
    "placeholder": OpSchema({"dtype": DTYPE, "shape": SHAPE}),
    "variable": OpSchema({"dtype": DTYPE, "shape": FULL_SHAPE, "initializer": InitializerSpec(),
                          "trainable": Bool()}),
    # ops/fill.py
    "fill": OpSchema({"shape": SHAPE, "value": Either(Bool(), Int(-2**63, 2**64 - 1),
                                                      Float(finite=False)),
                      "dtype": DTYPE}),
    "gather": NONE, "gather_grad": NONE,
    "scatter_add_rows": OpSchema({"in_place": Bool()}),
    "accumulator_zeros": NONE,   # ops/scatter.py (sink_gather)   # ops/scatter.py (sink_gather)
    "select_rows": NONE,   # ops/sparse_rows.py (the optimizers' sparse updates)
    # ops/nn.py
    "log_softmax": OpSchema({"axis": AXIS}), "softmax": OpSchema({"axis": AXIS}),
    "one_hot": OpSchema({"depth": optional(DIM), "dtype": DTYPE}),
    "sparse_softmax_cross_entropy": NONE,
    # ops/checks.py: the one free-text attribute (an error message, never code)
    "check_numerics": OpSchema({"message": Text()}),
    # ops/sequence.py, ops/rows.py, ops/group.py, ops/linalg.py
    "check_sequence_length": NONE,
    "check_steps": NONE,   # (passes/stream_outputs.py)
    "reverse_sequence": OpSchema({"seq_axis": AXIS, "batch_axis": AXIS}),
    "invert_permutation": NONE, "permute_rows": OpSchema({"axis": AXIS}),
    "host_rows": OpSchema({"time_axis": Int(0, MAX_RANK - 1)}),   # ops/host_rows.py
    "to_host": NONE,   # ops/transfer.py (passes/spill_values.py)
    "to_device": OpSchema({"axis": optional(AXIS), "index": optional(DIM)}),
    "sequence_mask": NONE, "sort_by_length": NONE, "group": NONE,
    "matmul": NONE, "matrix_transpose": NONE,
    "range": OpSchema({"dtype": DTYPE}), "stop_gradient": NONE,   # ops/misc.py
    "identity": NONE,   # ops/misc.py (tf.identity; extra inputs are dependencies)
    "read_variable": NONE,   # ops/misc.py (rg.identity(v) under rg.control_dependencies)
    "init_listed_variables": NONE,   # ops/misc.py (tf.variables_initializer)
    "log_uniform_candidate_sampler": OpSchema({   # ops/candidates.py
        "num_true": COUNT, "num_sampled": DIM, "unique": Bool(), "range_max": DIM,
        "seed": SEED, "seed2": SEED}),
    # ops/loop.py: the body comes as the node's one body graph
    "loop": OpSchema({"has_trip": Bool(), "reverse": Bool(), "length_from": optional(COUNT),
                      "parallel_iterations": Int(1, 2**31 - 1), "swap_memory": Bool(),
                      "maximum_iterations": optional(Int(0, MAX_DIM)),
                      "active_rows": Bool(), "shrink": Bool(),
                      "rows_only": Tuple(COUNT, max_len=MAX_PARTS),
                      "unzeroed": Tuple(COUNT, max_len=MAX_PARTS),
                      # a chunked loop (ops/loop.py): its chunk prologue's sequence blocks and
                      # the carried values its chunk epilogue updates
                      "chunk_steps": optional(Int(1, MAX_DIM)),
                      "chunk_blocks": Tuple(COUNT, max_len=MAX_PARTS),
                      "epilogue_carried": Tuple(COUNT, max_len=MAX_PARTS),
                      "epilogue_outputs": Tuple(COUNT, max_len=MAX_PARTS),
                      # stacked outputs written to host memory (passes/host_outputs.py)
                      "host_outputs": Tuple(COUNT, max_len=MAX_PARTS)}, body=True,
                     rule=_chunked),
    # ops/steps.py, ops/panels.py: what the compiler's passes put in
    "pack_rows": OpSchema({"gather": Bool()}),
    "rows_matmul": OpSchema({"packed": Bool(), "unsort": Bool(), "only_loops_read": Bool()}),
    "step_contract": OpSchema({"parts": Int(1, MAX_PARTS), "ones": Bool(),
                               "shifted": Tuple(COUNT, max_len=MAX_PARTS),
                               "packed_b": Bool(),
                               "packed_parts": Tuple(COUNT, max_len=MAX_PARTS)},
                              rule=_contract_parts),
    "step_sum": NONE, "pack_panels": NONE, "panel_matmul": NONE,
    # ops/random.py: seeds are 64-bit words; the distribution from a fixed set
    "random_standard": OpSchema({"dist": Choice("uniform", "normal", "truncated_normal", "bits"),
                                 "shape": optional(FULL_SHAPE), "dtype": DTYPE, "seed": SEED,
                                 "seed2": SEED, "loc": Float(), "scale": Float()}),
    "random_shuffle": OpSchema({"seed": SEED, "seed2": SEED}),
    "random_uniform_int": OpSchema({"shape": optional(FULL_SHAPE),   # (an int dtype)
                                    "dtype": Choice("int32", "int64"),
                                    "minval": Int(-2**63, 2**63 - 1),
                                    "maxval": Int(-2**63, 2**63 - 1),
                                    "seed": SEED, "seed2": SEED}),
    "multinomial": OpSchema({"num_samples": DIM, "output_dtype": Choice("int32", "int64"),
                             "seed": SEED, "seed2": SEED}),
    "placeholder_with_default": OpSchema({"shape": SHAPE}),
    # ops/schedules.py
    "lr_schedule": OpSchema({"kind": Choice("exponential", "polynomial", "cosine", "piecewise"),
                             "decay_steps": Float(lo=0.0), "decay_rate": Float(),
                             "staircase": Bool(), "end": Float(), "power": Float(),
                             "cycle": Bool(), "alpha": Float(),
                             "boundaries": Tuple(Float(), max_len=MAX_PARTS),
                             "values": Tuple(Float(), max_len=MAX_PARTS)}),
}

# --- fused nodes: a program of the ops below (see the module docstring) ------------------------
# the ops a fused node may run, written out by hand (tests check it against the registry's
# fusible ops): elementwise ops whose NumPy, C and numba forms come from ops/scalar.py's table
# or their own templates, the column block the pass reads gates with, and concat, the join of
# outputs the pass absorbs (passes/fuse.py). Never `fused` itself, a loop, or a stateful op.
FUSED_OPS = frozenset((
    "abs", "add", "add_n", "column_block", "div", "equal", "exp", "greater", "greater_equal",
    "less", "less_equal", "log", "logical_and", "logical_not", "logical_or", "maximum",
    "minimum", "mul", "neg", "not_equal", "ones_like", "pow", "relu", "sigmoid", "sign", "sqrt",
    "square", "sub", "tanh", "where", "zeros_like", "concat"))
FUSED_JOIN = "concat"
# instructions of one fused node: the pass makes groups of at most passes/fuse.MAX_GROUP = 64
# ops and adds at most one join per two of their outputs; room to spare, and every generator
# (NumPy, numba, CUDA) handles this many without deep recursion
MAX_FUSED = 256


class Instruction(Spec):
    """One instruction's saved form: [op name, {attribute: value}, [ref, ...]]; what the name,
    attributes and refs hold is checked by _fused_program, which says which one is wrong."""
    what = "[op name, attributes, refs]"

    def fits(self, x) -> bool:
        return type(x) is tuple and len(x) == 3 and type(x[0]) is str and \
            type(x[1]) is dict and type(x[2]) is tuple and 1 <= len(x[2]) <= MAX_PARTS


class Origin(Spec):
    """Where an instruction came from: (node name, location), checked like a node's."""
    what = "[node name, location]"

    def fits(self, x) -> bool:
        return type(x) is tuple and len(x) == 2 and name_problem(x[0], "name") is None and \
            line_problem(x[1], "location") is None


def _ref_problem(r, n_values: int, what: str) -> str | None:
    if type(r) is not int:
        return f"{what} must be an int, got {_show(r)}"
    if not 0 <= r < n_values:
        return f"{what} ({r}) is out of range: it must name one of values 0..{n_values - 1} " \
               "(the inputs, then the instructions before it)"
    return None


def _fused_program(attrs: dict) -> str | None:
    n, instrs = attrs["n_inputs"], attrs["instrs"]
    joins = set()
    for j, (name, inner, refs) in enumerate(instrs):
        where = f"instruction {j}"
        if name not in FUSED_OPS:
            return f"{where}: op {name[:40]!r} cannot run inside a fused node (only fusible " \
                   "elementwise ops and the concat join)"
        problem = attrs_problem(name, inner)
        if problem is not None:
            return f"{where} ({name}): {problem}"
        for k, r in enumerate(refs):
            problem = _ref_problem(r, n + j, f"ref {k}")
            if problem is not None:
                return f"{where} ({name}): {problem}"
            if r in joins:
                return f"{where} ({name}): reads the join {r}; a join is only an output"
        if name == FUSED_JOIN:
            # exactly what passes/fuse._absorb_joins makes: Concat(1) of two or more distinct
            # computed [B, H] parts (the kernels write them side by side along the columns)
            if type(inner.get("axis")) is not int or inner["axis"] != 1:
                return f"{where} (concat): a join is a concat along axis 1 (the columns), " \
                       f"got axis {inner['axis']}"
            if len(refs) < 2 or len(set(refs)) != len(refs):
                return f"{where} (concat): a join has two or more distinct parts"
            if any(r < n for r in refs):
                return f"{where} (concat): a join's parts are instructions' results, not inputs"
            joins.add(n + j)
    exports = attrs["exports"]
    for k, r in enumerate(exports):
        problem = _ref_problem(r, n + len(instrs), f"export {k}")
        if problem is not None:
            return problem
        if r < n:
            return f"export {k} ({r}) names an input; exports name instructions' results"
    if len(set(exports)) != len(exports):
        return "exports name one value twice"
    if len(attrs["origins"]) != len(instrs):
        return f"origins has {len(attrs['origins'])} entries for {len(instrs)} instructions"
    return None


SCHEMAS["fused"] = OpSchema({
    "n_inputs": COUNT, "instrs": Tuple(Instruction(), min_len=1, max_len=MAX_FUSED),
    "exports": Tuple(Int(-MAX_DIM, MAX_DIM), min_len=1, max_len=MAX_FUSED),
    "origins": Tuple(Origin(), max_len=MAX_FUSED)}, rule=_fused_program)

# ops that never come from a file: why, for the error message (none at present)
REFUSED: dict[str, str] = {}

# the parameters of each initializer kind (inits.KINDS), as Initializer.params() gives them
INITIALIZERS: dict[str, dict] = {
    "zeros": {}, "ones": {}, "glorot_uniform": {"seed": optional(SEED)},
    "constant": {"value": Numbers(), "layout": Choice("tf1", "broadcast")},
    "random_uniform": {"minval": Float(), "maxval": Float(), "seed": optional(SEED)},
    "random_normal": {"mean": Float(), "stddev": Float(lo=0.0), "seed": optional(SEED)},
    # ops/initializers.py, the randomness issue's: seeded Philox draws (ops/random.py)
    "glorot_normal": {"seed": optional(SEED)},
    "truncated_normal": {"mean": Float(), "stddev": Float(lo=0.0), "seed": optional(SEED)},
    "orthogonal": {"gain": Float(), "seed": optional(SEED)},
    "random_draw": {"dist": Choice("uniform", "normal", "truncated_normal"), "seed": SEED,
                    "seed2": SEED, "loc": Float(), "scale": Float(), "step": Int(0, 2**32 - 1)},
}


# --- checking: each function returns None when all is well, else what is wrong ---------------
def op_problem(name: str) -> str | None:
    """Why op `name` is never loaded (refused, or no declared schema), or None."""
    if name in REFUSED:
        return f"op {name!r} cannot be loaded: {REFUSED[name]}"
    if name not in SCHEMAS:
        return f"op {name!r} has no declared attribute schema, so it is never loaded"
    return None


def _show(x) -> str:
    text = repr(x)
    return f"{type(x).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def params_problem(declared: dict, given) -> str | None:
    """Every name in `given` declared, every declared name given, each value fitting its spec;
    else the first attribute that does not, by name."""
    if type(given) is not dict:
        return f"attributes must be a mapping, got {_show(given)}"
    for name in given:
        if name not in declared:
            known = ", ".join(sorted(declared))
            return f"unknown attribute {name!r} " + \
                (f"(declared: {known})" if known else "(none is declared)")
    for name, spec in declared.items():
        if name not in given:
            return f"missing attribute {name!r}"
        if not spec.fits(given[name]):
            return f"attribute {name!r} must be {spec.what}, got {_show(given[name])}"
    return None


def attrs_problem(op_name: str, attrs) -> str | None:
    """What is wrong with the decoded attributes of a node of op `op_name`, or None."""
    problem = op_problem(op_name)
    if problem is None:
        entry = SCHEMAS[op_name]
        problem = params_problem(entry.attrs, attrs)
        if problem is None and entry.rule is not None:
            problem = entry.rule(attrs)
    return problem


def constructor_args(op_name: str, attrs: dict) -> dict:
    """The keyword arguments that build op `op_name` from attributes that passed attrs_problem."""
    entry = SCHEMAS[op_name]
    return entry.to_args(attrs) if entry.to_args is not None else dict(attrs)


def name_problem(name, what: str) -> str | None:
    """A node name: the characters Graph.unique_name allows, bounded."""
    if type(name) is not str or len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        return (f"bad {what} {_show(name)}: names hold letters, digits and '_.-/' "
                f"(at most {MAX_NAME})")
    return None


def line_problem(text, what: str) -> str | None:
    """A label shown to people only (where a node was built, a graph's name): one line of
    bounded text."""
    if type(text) is not str or len(text) > MAX_NAME or "\n" in text or _CONTROL.search(text):
        return f"bad {what} {_show(text)}: one line of at most {MAX_NAME} characters"
    return None


def device_problem(text) -> str | None:
    """A node's placement (rg.device): a device string in rnngraph's canonical form."""
    if type(text) is not str or len(text) > device_spec.MAX_DEVICE:
        return f"bad device {_show(text)}: a device string like '/device:GPU:0'"
    try:
        ok = device_spec.canonical(text) == text
    except ValueError:
        ok = False
    return None if ok else f"bad device {_show(text)}: a device string like '/device:GPU:0'"


def uncovered(ops) -> list[str]:
    """Names in `ops` (op names, e.g. registry.op_registry()) with neither a schema entry nor a
    refusal: ops that could not be loaded, and that the schema must learn about."""
    return sorted(name for name in ops if name not in SCHEMAS and name not in REFUSED)
