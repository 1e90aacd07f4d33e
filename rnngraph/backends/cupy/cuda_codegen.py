"""CUDA C for a Fused node: one `extern "C" __global__` kernel per fused group.

Each thread computes one element of the group's *domain* (the broadcast shape of its outputs;
a join's parts count, not the join) and walks every instruction for it in registers:
- elementwise ops paste their C expression from the op itself (`op.cexpr`, i.e. ops/scalar.py's
  table, the same row the NumPy and numba generators read), so each op's math is written once;
- an input is loaded through its strides (kernel arguments); a dim statically 1 is read at
  index 0 (broadcasting by index math, no copies);
- a column block (ops/shape.ColumnBlock, an LSTM's gate block of [B, 4H]) is its input read at
  a column offset (`ColumnBlock.c_index`), so the gates come straight out of the unsplit
  product; a block of a computed value evaluates that value at the shifted column;
- a join (a last-axis concat of the group's outputs, made by passes/fuse._absorb_joins) writes
  each part into its columns of the one [B, n*H] output.
Outputs are fresh contiguous arrays; an output smaller than the domain (a dim statically 1)
is written by the threads at index 0 of that dim only.

The source is built only from the templates here, identifiers made here (in3, t7, c1, d0,
s2_1) and numbers formatted here with int(): never from a name or any other text of a graph
(a saved graph is data). The kernel's name is a hash of its source, so it is the same in every
process and CuPy's on-disk cache serves later processes.

Nothing here imports CuPy: the host side of a launch (shape checks, the domain, the scalar
arguments) is `CudaKernel.prepare`, plain Python on shapes, so sources can be generated,
compiled with NVRTC (backends/cupy/nvrtc.py) and checked on a machine without a GPU.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, NamedTuple

from ...errors import InvalidArgumentError, ShapeError
from ...ir.types import broadcast_shapes
from ...ops.elementwise import unknown_dim_checks
from ...ops.shape import ColumnBlock, Concat

THREADS = 256            # threads per block
MAX_BLOCKS = 1 << 16     # more elements than blocks * threads: each thread loops (grid stride)
_NAME = "RG_KERNEL_NAME"  # stands for the kernel's name while its hash is taken
PREFIX = "rnngraph_fused_"

# dtype name -> C type (a fixed table: the only type names that enter a source)
C_TYPES = {"float32": "float", "float64": "double", "bool": "bool", "int8": "signed char",
           "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
           "uint16": "unsigned short", "uint32": "unsigned int", "uint64": "unsigned long long"}


# ops whose C function has floating-point overloads only (pow(int, int) is ambiguous to NVRTC,
# and NumPy's integer power is not a cast to double and back): other dtypes run the array code
_FLOAT_ONLY = frozenset({"pow"})
_FLOATS = frozenset({"float32", "float64"})
# ops NumPy refuses on bool (neg, sign, sub: TypeError) or computes in another dtype (square:
# int8): bool groups with them run the array code, which does what the NumPy backend does
_NOT_BOOL = frozenset({"neg", "sign", "sub", "square"})


class Declined(NamedTuple):
    """Why a Fused node gets no CUDA kernel (the CuPy backend then runs its array code)."""
    reason: str


@dataclass(frozen=True)
class CudaKernel:
    """A generated kernel and what its launch needs on the host.

    A dim's *provenance* is an int (known at build time) or (k, axis): the run-time size of
    input k's axis. Every check below reads only shapes, which are on the host: no sync."""
    name: str
    source: str
    n_inputs: int
    out_dtypes: tuple      # per output: dtype name
    out_shapes: tuple      # per output: per axis a provenance
    domain: tuple          # per domain axis: provenance
    dim_args: tuple        # domain axes whose size is an argument (d<axis>), in order
    stride_args: tuple     # (k, axis): input strides passed as arguments (s<k>_<axis>), in order
    in_types: tuple        # per input: (static shape, dtype name)
    dim_checks: tuple      # (instr, operand provenances, p1, p2): the unfused op's own check
    bounds: tuple          # (k, axis, provenance or None, offset, exact): dim >= extent +
                           # offset (a column block's read), or dim == extent when exact (a
                           # plain read: the input must be the domain's size, as in NumPy)
    agree: tuple           # (p1, p2): outputs' unknown dims that must agree for one domain
                           # (with each other, or with the domain's static size there)

    def dim(self, p, shapes) -> int:
        return p if isinstance(p, int) else shapes[p[0]][p[1]]

    def prepare(self, shapes, dtypes, strides, mismatch: Callable, what: str = ""):
        """The launch of one call on inputs of `shapes`, `dtypes` (names) and `strides` (in
        elements): (elements, output shapes, the scalar arguments after the arrays), or None
        when the outputs' unknown dims do not agree (the caller runs the array code, which
        broadcasts them separately). A dim unknown at build time that differs from another
        calls `mismatch(instr, operand_shapes)` (it raises InvalidArgumentError, as the
        unfused op would); an input that contradicts its static type raises here (`what`
        names the node in that message)."""
        what = what or f"fused kernel {self.name}"
        for k, ((static, dtype), shape) in enumerate(zip(self.in_types, shapes)):
            if len(shape) != len(static) or dtypes[k] != dtype or \
                    any(s is not None and s != d for s, d in zip(static, shape)):
                raise InvalidArgumentError(
                    f"{what}: input {k} is {dtypes[k]}{list(shape)}, its static "
                    f"type is {dtype}{['?' if s is None else s for s in static]}")
        for j, operands, p1, p2 in self.dim_checks:
            if self.dim(p1, shapes) != self.dim(p2, shapes):
                mismatch(j, [tuple(self.dim(p, shapes) for p in ps) for ps in operands])
        for p1, p2 in self.agree:
            if self.dim(p1, shapes) != self.dim(p2, shapes):
                return None
        n = 1
        for p in self.domain:
            n *= self.dim(p, shapes)
        for k, axis, p, offset, exact in self.bounds:
            extent = 1 if p is None else self.dim(p, shapes)
            size = shapes[k][axis]
            if n and exact and size != extent:
                raise InvalidArgumentError(
                    f"{what}: input {k} of shape {list(shapes[k])} has {size} elements along "
                    f"axis {axis}, where the group computes {extent}")
            if n and size < extent + offset:
                raise InvalidArgumentError(
                    f"{what}: input {k} of shape {list(shapes[k])} is too "
                    f"small for the columns it is read at")
        outs = [tuple(self.dim(p, shapes) for p in ps) for ps in self.out_shapes]
        scalars = [n] + [self.dim(self.domain[a], shapes) for a in self.dim_args] + \
            [strides[k][a] for k, a in self.stride_args]
        return n, outs, scalars

    def grid(self, n: int) -> int:
        """Blocks to launch for n elements (THREADS each)."""
        return max(1, min((n + THREADS - 1) // THREADS, MAX_BLOCKS))


# An index into a value is a tuple of (domain axis or None, offset, block) per axis: c<axis> +
# offset, or the constant offset; rendered by _text. `block` is True where a column block moved
# it (such a read may stop short of the input's end; a plain read covers the whole axis).
_ZERO = (None, 0, False)


def _text(i) -> str:
    axis, offset = i[0], i[1]
    if axis is None:
        return str(int(offset))
    return f"c{int(axis)}" if offset == 0 else f"(c{int(axis)} + {int(offset)})"


def _is_zero(i) -> bool:
    return i[0] is None and i[1] == 0


def _plain(idx: tuple) -> tuple:
    """The index without its block marks (what the generated code reads)."""
    return tuple((i[0], i[1]) for i in idx)


def _shift(i, offset: int):
    return (i[0], i[1] + int(offset), True)


def _canonical(shape, rank: int) -> tuple:
    """The index of a value of `shape` at the thread's domain coordinates (c0, c1, ...)."""
    r = len(shape)
    return tuple(_ZERO if d == 1 else (rank - r + a, 0, False) for a, d in enumerate(shape))


def _operand_index(idx: tuple, shape) -> tuple:
    """A broadcast operand's index at its result's index `idx` (aligned right)."""
    lead = len(idx) - len(shape)
    return tuple(_ZERO if d == 1 else idx[lead + a] for a, d in enumerate(shape))


class _Classes:
    """Dims known equal (union-find over provenances)."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, p):
        while self.parent.get(p, p) != p:
            p = self.parent[p]
        return p

    def known_equal(self, p1, p2) -> bool:
        return self.find(p1) == self.find(p2)

    def join(self, p1, p2) -> bool:
        """Make p1 and p2 equal; True if they already were."""
        r1, r2 = self.find(p1), self.find(p2)
        if r1 == r2:
            return True
        if isinstance(r1, int):   # a known size stays the class' representative
            r1, r2 = r2, r1
        self.parent[r1] = r2
        return False


def _provenances(op, in_types):
    """Per value (inputs, then instructions): its dims' provenance (see CudaKernel)."""
    prov = [tuple(d if d is not None else (k, a) for a, d in enumerate(t.shape))
            for k, t in enumerate(in_types)]
    shapes = [t.shape for t in in_types] + [t.shape for t in op._temp_types]
    for j, (inner, refs) in enumerate(op.instrs):
        out = op._temp_types[j].shape
        dims = []
        for a, d in enumerate(out):
            if d is not None:
                dims.append(int(d))
                continue
            if isinstance(inner, ColumnBlock):
                dims.append(prov[refs[0]][a])
                continue
            found = None
            for r in refs:
                pos = a - (len(out) - len(shapes[r]))
                if pos >= 0 and shapes[r][pos] is None:
                    found = prov[r][pos]
                    break
            if found is None:
                raise ShapeError(f"instruction {j}: no operand gives its dim {a}")
            dims.append(found)
        prov.append(tuple(dims))
    return prov, shapes


def cuda_kernel(op, in_types) -> CudaKernel | Declined:
    """The CUDA kernel of Fused `op` whose inputs have static types `in_types`, or Declined."""
    n_in = op.n_inputs
    instrs = op.instrs
    dtypes = [t.dtype.name for t in in_types] + [t.dtype.name for t in op._temp_types]
    for name in dtypes:
        if name not in C_TYPES:
            return Declined(f"dtype {name} has no C type here")
    joins = {}
    for j, (inner, refs) in enumerate(instrs):
        if isinstance(inner, Concat):
            joins[n_in + j] = refs
        elif not isinstance(inner, ColumnBlock) and not hasattr(inner, "cexpr"):
            return Declined(f"op {type(inner).name} has no C expression")
        elif getattr(inner, "name", None) in _FLOAT_ONLY and (
                dtypes[n_in + j] not in _FLOATS or any(dtypes[r] not in _FLOATS for r in refs)):
            return Declined(f"op {inner.name} has a C form for floating-point dtypes only")
        elif getattr(inner, "name", None) in _NOT_BOOL and any(dtypes[r] == "bool" for r in refs):
            return Declined(f"op {inner.name} on bool runs as NumPy runs it")
    for j, (inner, refs) in enumerate(instrs):
        if any(r in joins for r in refs):
            return Declined("a join is read inside its group")
    try:
        prov, shapes = _provenances(op, in_types)
    except ShapeError as exc:
        return Declined(str(exc))
    for r, parts in joins.items():
        t = shapes[r]
        ranks = {len(shapes[p]) for p in parts}
        if len(t) == 0 or instrs[r - n_in][0].axis % len(t) != len(t) - 1 or ranks != {len(t)} \
                or any(r == p for p in parts):
            return Declined("a join that is not along the last axis")
        if len({shapes[p][-1] for p in parts}) != 1 or shapes[parts[0]][-1] is None:
            return Declined("a join of parts of different or unknown widths")

    # the domain: the broadcast shape of every output (a join: its parts)
    written = []   # (ref, export index or None)
    for e, r in enumerate(op.exports):
        written += [(p, e) for p in joins[r]] if r in joins else [(r, e)]
    try:
        domain_shape = broadcast_shapes(*[shapes[r] for r, _ in written]) if written else ()
    except ShapeError:
        return Declined("outputs whose shapes do not broadcast to one domain")
    rank = len(domain_shape)
    domain, agree = [], []
    for a, d in enumerate(domain_shape):
        cands = []
        for r, _ in written:
            pos = a - (rank - len(shapes[r]))
            if pos >= 0 and shapes[r][pos] is None and prov[r][pos] not in cands:
                cands.append(prov[r][pos])
        if d is not None:
            # a static domain size: every written output unknown there must have that size
            # at run time (else the array code runs, which sizes each output on its own)
            domain.append(int(d))
            agree += [(int(d), c) for c in cands]
            continue
        domain.append(cands[0])
        agree += [(cands[0], c) for c in cands[1:]]

    def dim_text(a: int) -> str:
        return str(domain[a]) if isinstance(domain[a], int) else f"d{a}"

    # the kernel body, generated on demand from the outputs back (each value once per index)
    lines: list[str] = []
    memo: dict = {}
    strides: list = []
    bounds: dict = {}

    def value(r: int, idx: tuple) -> str:
        """The C name of value r at index idx, emitting the lines that compute it (operands
        first, each value once per index). Iterative, with its own stack: a program may chain
        as many instructions as the loader accepts (io/schema.MAX_FUSED), past Python's
        recursion limit."""
        done: list = []                      # names of finished values, operands in order
        todo: list = [(True, r, idx, 0)]     # (entering?, value, index, operand count)
        while todo:
            enter, r, idx, n = todo.pop()
            key = (r, _plain(idx))
            if enter:
                if r < n_in:   # every read is bounded (the same element may be read plain
                    for a, i in enumerate(idx):   # and by block)
                        if shapes[r][a] != 1:
                            bound(r, a, i)
                if key in memo:
                    done.append(memo[key])
                    continue
                if r < n_in:
                    terms = []
                    for a, i in enumerate(idx):
                        if _is_zero(i):
                            continue
                        if (r, a) not in strides:
                            strides.append((r, a))
                        terms.append(f"{_text(i)} * s{r}_{a}")
                    name = f"v{len(memo)}"
                    lines.append(f"const {C_TYPES[dtypes[r]]} {name} = "
                                 f"in{r}[{' + '.join(terms) or '0'}];")
                    memo[key] = name
                    done.append(name)
                    continue
                inner, refs = instrs[r - n_in]
                if isinstance(inner, ColumnBlock):
                    operands = [(refs[0], inner.c_index(idx, _shift))]
                else:
                    operands = [(u, _operand_index(idx, shapes[u])) for u in refs]
                todo.append((False, r, idx, len(operands)))
                todo += [(True, u, i, 0) for u, i in reversed(operands)]
                continue
            args = done[len(done) - n:]
            del done[len(done) - n:]
            inner = instrs[r - n_in][0]
            if isinstance(inner, ColumnBlock):
                name = args[0]
            else:
                canonical = _plain(idx) == _plain(_canonical(shapes[r], rank))
                name = f"t{r - n_in}" if canonical else f"t{r - n_in}_{len(memo)}"
                lines.append(f"const {C_TYPES[dtypes[r]]} {name} = {inner.cexpr(args)};")
            memo[key] = name
            done.append(name)
        return done[0]

    def bound(k: int, a: int, i) -> None:
        """Record what index i needs of input k's axis a (checked on the host at each call):
        a plain read covers the axis, so its size is the domain axis' size; a column block's
        read needs at least the domain axis' size (1 for a constant) plus the offset."""
        p = None if i[0] is None else domain[i[0]]
        if p == prov[k][a] and i[1] == 0:
            return   # read at its own size
        exact = not i[2] and i[1] == 0 and p is not None
        if isinstance(prov[k][a], int) and (p is None or isinstance(p, int)):
            need = (1 if p is None else p) + i[1]
            if prov[k][a] < need or (exact and prov[k][a] != need):
                raise ShapeError(f"input {k} is read past the end of its axis {a}"
                                 if prov[k][a] < need else
                                 f"input {k}'s axis {a} is not the size of the domain's")
            return
        key = (k, a, p, exact)
        bounds[key] = max(bounds.get(key, 0), i[1])

    out_shapes = []
    stores = []
    for e, r in enumerate(op.exports):
        parts = joins.get(r, (r,))
        width = shapes[parts[0]][-1] if r in joins else None
        for q, p in enumerate(parts):
            shape = shapes[p]
            lead = rank - len(shape)
            try:
                name = value(p, _canonical(shape, rank))
            except ShapeError as exc:
                return Declined(str(exc))
            guards = [f"c{a} == 0" for a in range(rank) if domain[a] != 1 and
                      (a < lead or shape[a - lead] == 1)]
            dims = ["1" if d == 1 else dim_text(lead + b) for b, d in enumerate(shape)]
            idx = list(_canonical(shape, rank))
            if r in joins:   # part q's columns of the joined output
                dims[-1] = str(int(width) * len(parts))
                idx[-1] = _shift(idx[-1], q * int(width))
            terms = []
            for b, i in enumerate(idx):
                if _is_zero(i):
                    continue
                step = " * ".join(d for d in dims[b + 1:] if d != "1")
                terms.append(f"{_text(i)} * {step}" if step else _text(i))
            store = f"out{e}[{' + '.join(terms) or '0'}] = {name};"
            stores.append(f"if ({' && '.join(guards)}) {store}" if guards else store)
        if r in joins:
            lead_prov = prov[r][:-1]
            out_shapes.append(lead_prov + (int(width) * len(parts),))
        else:
            out_shapes.append(prov[r])

    # the source: parameters, the thread's coordinates, the body, the stores
    params = [f"const {C_TYPES[dtypes[k]]}* __restrict__ in{k}" for k in range(n_in)]
    params += [f"{C_TYPES[dtypes[r]]}* __restrict__ out{e}" for e, r in enumerate(op.exports)]
    params.append("const long long n")
    dim_args = tuple(a for a in range(rank) if not isinstance(domain[a], int))
    params += [f"const long long d{a}" for a in dim_args]
    params += [f"const long long s{k}_{a}" for k, a in strides]
    coords = ["long long rest = i;"] if rank > 1 else []
    for a in range(rank - 1, 0, -1):
        if domain[a] == 1:
            coords.append(f"const long long c{a} = 0;")
        else:
            coords += [f"const long long c{a} = rest % {dim_text(a)};", f"rest /= {dim_text(a)};"]
    if rank:
        coords.append("const long long c0 = rest;" if rank > 1 else "const long long c0 = i;")
    body = "\n".join("        " + line for line in coords + lines + stores)
    source = (f'extern "C" __global__ void {_NAME}(\n    ' + ",\n    ".join(params) + ")\n{\n"
              "    const long long step = (long long)blockDim.x * gridDim.x;\n"
              "    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; "
              "i += step) {\n" + body + "\n    }\n}\n")
    name = PREFIX + hashlib.sha256(source.encode()).hexdigest()[:16]
    source = source.replace(_NAME, name)

    # the unfused ops' checks, each once; dims these checks make equal need no other check
    same = _Classes()
    dim_checks = []
    for j, (inner, refs) in enumerate(instrs):
        if isinstance(inner, (ColumnBlock, Concat)):
            continue
        for i, ai, k, ak in unknown_dim_checks([shapes[u] for u in refs]):
            p1, p2 = prov[refs[i]][ai], prov[refs[k]][ak]
            if not same.join(p1, p2):
                dim_checks.append((j, tuple(prov[u] for u in refs), p1, p2))
    agree = [(p1, p2) for p1, p2 in agree if not same.join(p1, p2)]
    bounds = {key: off for key, off in bounds.items()
              if off or not same.known_equal(prov[key[0]][key[1]], key[2])}
    return CudaKernel(
        name=name, source=source, n_inputs=n_in,
        out_dtypes=tuple(dtypes[r] for r in op.exports),
        out_shapes=tuple(out_shapes), domain=tuple(domain), dim_args=dim_args,
        stride_args=tuple(strides),
        in_types=tuple((t.shape, t.dtype.name) for t in in_types),
        dim_checks=tuple(dim_checks),
        bounds=tuple((k, a, p, off, exact) for (k, a, p, exact), off in bounds.items()),
        agree=tuple(agree))
