"""Reductions and products over the executed steps of a loop's stacks [L, batch, ...].

Compiler passes use these to move per-step work out of a loop: the gradient of a shared weight,
accumulated per step as a_t^T b_t, becomes one large matrix multiply over all steps; an input
projection x_t @ W of every step becomes one before the loop.

With `rows` (a loop's active row counts, rows sorted longest first) only the rows b < rows[t]
of step t take part: the rows of finished sequences are packed out of the product, which is
then exactly as large as the work the loop really does.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from .base import Op, apply, same_dtype


class StepSum(Op):
    """sum over the first n rows: stack[:n].sum(axis=0); with `rows` (a stack [L, B, ...]),
    each step's active rows only."""
    name = "step_sum"

    def infer(self, stack, n, *rows):
        if stack.rank < (2 if rows else 1):
            raise ShapeError(f"needs a stack [steps, ...], got {stack}")
        return TensorType(stack.shape[1:], stack.dtype)

    def compute(self, xp, stack, n, *rows):
        n = int(n)
        counts = _counts(rows[0], n, stack.shape[1]) if rows else None
        if counts is None:   # (in the stack's dtype: NumPy sums int32 as int64)
            return stack[:n].sum(axis=0, dtype=stack.dtype)
        out = xp.zeros(stack.shape[1:], stack.dtype)
        if isinstance(stack, StepRows):   # (packed by a loop: step by step)
            for t, k in enumerate(counts):
                out[:k] += stack[t][:k]
            return out
        start = 0
        for t in range(1, len(counts) + 1):   # one sum per run of steps with equal counts
            if t == len(counts) or counts[t] != counts[start]:
                k = int(counts[start])
                if k:
                    out[:k] += stack[start:t, :k].sum(axis=0)
                start = t
        return out


def _counts(rows, steps: int, batch: int):
    """Active rows per step (host ints), or None when every row of every step is active."""
    counts = rows[:steps]
    counts = np.minimum(counts.get() if hasattr(counts, "get") else np.asarray(counts), batch)
    return None if counts.size == steps and (counts >= batch).all() else counts


def _pack(xp, x, counts, batch: int, alloc=None, slot=0):
    """The active rows (a prefix of each step: rows are sorted longest first) of a stack
    x [steps, batch, K], one step after another: [sum(counts), K], copied in blocks straight
    from x (a strided stack is not made contiguous first), into a pooled scratch array when
    `alloc` gives one (a fresh one costs page faults: 0.8 ms against 0.2 ms per pack in the
    padded S1 BasicRNN benchmark)."""
    if isinstance(x, StepRows):
        rows = x.rows(counts)
        if rows is not None:
            return rows   # packed as the loop wrote it
    parts = _active_rows(x, counts)
    if not parts:
        return x.packed[:0] if isinstance(x, StepRows) else x.reshape(-1, x.shape[2])[:0]
    # (the pool's key is the whole size, so it does not change with the lengths)
    out = alloc((x.shape[0] * x.shape[1], x.shape[2]), x.dtype, slot)[:int(sum(counts))] \
        if alloc is not None else None
    return xp.concatenate(parts, out=out)


def _unpack(packed, counts, batch: int, out):
    """The inverse of _pack: out [steps * batch, K] (uninitialised) gets each step's active
    rows from `packed` and zeros past them, and zeros in the steps past the counts."""
    start = 0
    for t, n in enumerate(counts):
        n = int(n)
        out[t * batch:t * batch + n] = packed[start:start + n]
        out[t * batch + n:(t + 1) * batch] = 0
        start += n
    out[len(counts) * batch:] = 0
    return out


def _active_rows(x, counts, first: int = 0) -> list:
    """Each step's active rows of stack x (x[t - first, :k] for step t), for one concatenate;
    of a packed stack in its layout, one block."""
    if isinstance(x, StepRows):
        rows = x.rows(counts) if first == 0 else None
        if rows is not None:
            return [rows]
        return [x[t - first][:k] for t, k in enumerate(counts) if k and t >= first]
    return [x[t - first, :k] for t, k in enumerate(counts) if k and t >= first]


class StepContract(Op):
    """sum_t a_t^T @ b_t over the first n steps of stacks a [L, B, K] and b [L, B, N]:
    one [K, n*B] @ [n*B, N] product (with `rows`: over the active rows only).

    With `parts` > 1 the first `parts` inputs are stacks a_1 .. a_p sharing b, and the result is
    their products stacked along K, computed as one product over [a_1 | ... | a_p] (a cell's
    input and recurrent weight gradients: LSTM S2 took 2.12 ms this way against 2.75 ms as two
    products joined), or, where b is narrow (SPLIT_MAX_N), part by part into the result's
    rows, reading each part where it lies when its rows are b's (_contract_parts).

    With `ones`, a column of ones follows the a's: the last row of the result is sum_t sum_rows
    b_t, a bias's gradient, which then costs one more row of the product instead of another
    pass over b (S1 LSTM: a 26 MB stack, ~1.3 ms).

    `shifted` parts are a loop's output stack y and its initial state h0, standing for the stack
    [h0, y_0, ..., y_{n-2}] (the h_{t-1} a recurrent weight's gradient needs), which the loop
    then need not save separately. Inputs: a_1 .. a_p, one h0 per shifted part, b, n, rows.

    With `packed_b`, b is pack_rows(b, rows) of every step (shared with other products that
    pack it: passes/share_packs.py); the first n steps' rows are its leading rows. Likewise
    the a's listed in `packed_parts` (passes/sort_rows.py: dynamic_rnn's input, packed from
    the unsorted batch); at least one a stays a stack, for the batch size."""
    name = "step_contract"
    foldable = False

    def __init__(self, parts: int = 1, ones: bool = False, shifted: tuple = (),
                 packed_b: bool = False, packed_parts: tuple = ()):
        self.parts, self.ones = int(parts), bool(ones)
        self.shifted = tuple(int(j) for j in shifted)
        self.packed_b = bool(packed_b)
        self.packed_parts = tuple(int(j) for j in packed_parts)

    def attrs(self):
        return {"parts": self.parts, "ones": self.ones, "shifted": self.shifted,
                "packed_b": self.packed_b,
                **({"packed_parts": self.packed_parts} if self.packed_parts else {})}

    def split(self, inputs) -> tuple:
        """(stacks, {part: h0}, [b, n, rows...]) of this op's inputs."""
        p, q = self.parts, self.parts + len(self.shifted)
        return list(inputs[:p]), dict(zip(self.shifted, inputs[p:q])), list(inputs[q:])

    def infer(self, *ts):
        a_s, _, (b, *_) = self.split(ts)
        if any(a.rank != (2 if j in self.packed_parts else 3) for j, a in enumerate(a_s)) or \
                b.rank != (2 if self.packed_b else 3) or len(self.packed_parts) >= len(a_s):
            raise ShapeError("needs stacks [steps, batch, k] and [steps, batch, n] (packed: "
                             "[rows, n]), got " + ", ".join(str(t) for t in a_s + [b]))
        ks = [a.shape[-1] for a in a_s]
        return TensorType((None if None in ks else sum(ks) + self.ones, b.shape[-1]),
                          same_dtype(self.name, *a_s, b))

    def compute(self, xp, *args, alloc=None):
        a_s, starts, (b, n, *rows) = self.split(args)
        n = int(n)
        batch = next(a for j, a in enumerate(a_s) if j not in self.packed_parts).shape[1]
        counts = _counts(rows[0], n, batch) if rows else None
        if self.packed_b:   # steps are packed one after another: the first n lead
            b2 = b[:n * batch if counts is None else int(sum(counts))]
        else:
            b2 = b[:n].reshape(-1, b.shape[2]) if counts is None else \
                _pack(xp, b, counts, batch, alloc, 0)
        if len(a_s) == 1 and not self.ones and not starts:
            a2 = a_s[0][:n].reshape(-1, a_s[0].shape[2]) if counts is None else \
                _pack(xp, a_s[0], counts, batch, alloc, 1)
            return xp.matmul(a2.T, b2)
        stacks = [(a[:max(n - 1, 0)], starts[j]) if j in starts else
                  (a, None) if j in self.packed_parts else (a[:n], None)
                  for j, a in enumerate(a_s)]
        if b2.shape[1] <= SPLIT_MAX_N and b2.nbytes >= SPLIT_MIN_BYTES:
            return _contract_parts(xp, stacks, b2, n, batch, counts, alloc, self.ones)
        return xp.matmul(_side_by_side(xp, stacks, n, batch, counts, alloc, self.ones).T, b2)

    def flops(self, node):
        a_s, _, (b, *_) = self.split(node.inputs)
        stack = next(a for j, a in enumerate(a_s) if j not in self.packed_parts)
        rows = (stack.shape[0] or 1) * (stack.shape[1] or 1)
        k = sum(a.shape[-1] or 1 for a in a_s) + self.ones
        return 2 * rows * k * (b.shape[-1] or 1)


# Up to this many columns of b, StepContract multiplies part by part instead of side by side:
# the copy of [a_1 | a_2 | 1] costs the same per row whatever b's width, the product less the
# narrower b is (BasicRNN S1, b [6400, 256]: the copy took 1.9 ms of the node's 11.5 in the
# benchmark; alone, by parts 9.1 against 10.0 ms; at the LSTM's [6400, 1024] 30.1 against 30.6,
# at S3's [16000, 512] 21.8 against 21.3: no gain worth more calls)
SPLIT_MAX_N = 256
SPLIT_MIN_BYTES = 1 << 20   # (a smaller b: the copy is cheap, and each product a call more)


def _contract_parts(xp, stacks, b2, steps, batch, counts, alloc, ones):
    """StepContract's result part by part: rows col..col+K_j are a_j^T @ b2, one product per
    part straight from the stack where its rows are b2's already (a packed part, a contiguous
    stack, an output stack shifted by one step), from a packed copy of that part alone
    otherwise; a shifted part's h0 adds its own small product, and the ones row is a
    matrix-vector product."""
    widths = [a.shape[-1] for a, _ in stacks]
    out = xp.empty((sum(widths) + ones, b2.shape[1]), b2.dtype)
    n_rows, col = b2.shape[0], 0
    for slot, ((a, h0), w) in enumerate(zip(stacks, widths), start=1):
        dest = out[col:col + w]
        col += w
        if a.ndim == 2:   # packed already: its leading rows are these
            xp.matmul(a[:n_rows].T, b2, out=dest)
        elif counts is None and h0 is not None and isinstance(a, xp.ndarray):
            if not steps:
                dest[...] = 0
                continue
            # [h0, y_0 .. y_{n-2}]: y's rows pair with b2's from step 1 on
            xp.matmul(a.reshape(-1, w).T, b2[batch:], out=dest)
            dest += h0.T @ b2[:batch]
        elif counts is None and isinstance(a, xp.ndarray) and a.flags.c_contiguous:
            xp.matmul(a.reshape(-1, w).T, b2, out=dest)
        else:   # strided or with active rows: this part's rows copied once
            a2 = _side_by_side(xp, [(a, h0)], steps, batch, counts, alloc, slot=slot)
            xp.matmul(a2.T, b2, out=dest)
    if ones:
        xp.matmul(xp.ones(n_rows, b2.dtype), b2, out=out[col])
    return out


def _side_by_side(xp, stacks, steps, batch, counts, alloc, ones=False, slot=1):
    """[steps * batch (or the active rows), K_1 + ... + K_p (+ 1)]: the stacks' rows side by
    side, each copied once straight into its columns (strided stacks are not made contiguous
    first), then a column of ones if asked. `stacks` holds (stack, None), (y, h0) for
    [h0, y_0, y_1, ...] (a shifted output stack), or (matrix, None) for a part packed already
    (its leading rows are these)."""
    widths = [a.shape[-1] for a, _ in stacks]
    n_rows = steps * batch if counts is None else int(sum(counts))
    shape, dtype = (n_rows, sum(widths) + ones), stacks[0][0].dtype
    # (the pool's key is the whole size, so it does not change with the lengths)
    out = alloc((steps * batch, shape[1]), dtype, slot)[:n_rows] if alloc is not None else \
        xp.empty(shape, dtype)
    col = 0
    for (a, h0), w in zip(stacks, widths):
        if a.ndim == 2:
            out[:, col:col + w] = a[:n_rows]
        elif counts is None:
            grid = out.reshape(steps, batch, shape[1])[:, :, col:col + w]
            if h0 is None:
                grid[...] = a
            elif steps:
                grid[0] = h0
                grid[1:] = a
        elif n_rows:
            parts = _active_rows(a, counts) if h0 is None else \
                [h0[:counts[0]]] + _active_rows(a, counts, first=1)
            xp.concatenate(parts, out=out[:, col:col + w])
        col += w
    if ones:
        out[:, col] = 1
    return out


class RowsMatMul(Op):
    """x [L, B, K] @ w [K, N] for the active rows b < rows[t] of each step t; zero elsewhere
    (the product a loop with active rows would have computed step by step).

    The shrink_batch pass sets `only_loops_read` when the readers are loops running the same
    active rows: then (in untracked runs without a memory plan, where those loops shrink) the
    result stays packed as the product left it, a StepRows, instead of being scattered into a
    zeroed [L, B, N] (the projection of the padded S1 LSTM: 1.6 ms of its ~75).

    With `packed`, x is pack_rows(stack, rows) (shared: passes/share_packs.py) and a fourth
    input, the stack itself, gives the result's steps and batch (only its shape is read).

    With `unsort`, a last input `perm` reorders the batch: the result is
    permute_rows(product, perm, axis=1), each row gathered once from the packed product into
    its place (passes/sort_rows.py; the input gradient of dynamic_rnn, back in the caller's
    row order)."""
    name = "rows_matmul"
    foldable = False

    def __init__(self, packed: bool = False, unsort: bool = False, only_loops_read: bool = False):
        self.packed, self.unsort = bool(packed), bool(unsort)
        self.only_loops_read = bool(only_loops_read)

    def attrs(self):
        return {"packed": self.packed, **({"unsort": True} if self.unsort else {}),
                **({"only_loops_read": True} if self.only_loops_read else {})}

    def infer(self, x, w, rows, *rest):
        if len(rest) != self.packed + self.unsort:
            raise ShapeError(f"takes {3 + self.packed + self.unsort} inputs (x, w, rows"
                             f"{', the stack' if self.packed else ''}"
                             f"{', perm' if self.unsort else ''}), got {3 + len(rest)}")
        stack = rest[0] if self.packed else x
        if x.rank != (2 if self.packed else 3) or w.rank != 2 or stack.rank != 3:
            raise ShapeError(f"needs a stack [steps, batch, k] (packed: [rows, k] and the "
                             f"stack) and a matrix [k, n], got {x}, {w}")
        if x.shape[-1] is not None and w.shape[0] is not None and x.shape[-1] != w.shape[0]:
            raise ShapeError(f"inner dimensions differ: {x} @ {w}")
        batch = stack.shape[1]
        if self.unsort:   # one row per entry of the permutation
            perm = rest[-1]
            if perm.rank != 1:
                raise ShapeError(f"perm must be a vector, got {perm}")
            if None not in (batch, perm.shape[0]) and batch != perm.shape[0]:
                raise ShapeError(f"perm has {perm.shape[0]} entries for a batch of {batch}")
            batch = perm.shape[0] if perm.shape[0] is not None else batch
        return TensorType((stack.shape[0], batch, w.shape[1]), x.dtype)

    def compute(self, xp, x, w, rows, *rest, alloc=None, loops_only=False):
        like = rest[0] if self.packed else x
        perm = rest[-1] if self.unsort else None
        steps, batch = like.shape[:2]
        counts = _counts(rows, steps, batch)
        shape = (steps * batch, w.shape[1])
        if alloc is not None and x.dtype != w.dtype:
            alloc = None   # (matmul's result type decides; no buffer to guess it)
        if counts is None:
            out = alloc(shape, x.dtype, 0 if perm is None else 3) if alloc is not None else None
            out = xp.matmul(x.reshape(-1, x.shape[-1]), w, out=out).reshape(
                steps, batch, w.shape[1])
            if perm is None or _identity(perm):
                return out
            dest = alloc(out.shape, out.dtype) if alloc is not None else None
            return _take(xp, out, perm, 1, dest)
        packed = x if self.packed else _pack(xp, x, counts, batch, alloc, 1)
        if loops_only and alloc is not None:   # (mixed dtypes left alloc None: scatter)
            # (pooled at the whole size, a key that does not change with the lengths)
            product = alloc((steps * batch + batch, w.shape[1]), x.dtype, 2)[
                :packed.shape[0] + batch]
            product[packed.shape[0]:] = 0   # zero rows after the last: every view has `batch`
            xp.matmul(packed, w, out=product[:packed.shape[0]])
            return StepRows(product, counts, (steps, batch, w.shape[1]))
        if perm is not None:   # gathered into place: row N of the product is the zero row
            n = packed.shape[0]
            product = alloc((steps * batch + 1, w.shape[1]), x.dtype, 2)[:n + 1] \
                if alloc is not None else xp.empty((n + 1, w.shape[1]), x.dtype)
            xp.matmul(packed, w, out=product[:n])
            product[n] = 0
            out = alloc(shape, x.dtype) if alloc is not None else None
            out = _take(xp, product, _gather_index(xp, counts, perm, steps, n), 0, out)
            return out.reshape(steps, batch, w.shape[1])
        product = alloc((steps * batch, w.shape[1]), x.dtype, 2)[:packed.shape[0]] \
            if alloc is not None else None
        packed = xp.matmul(packed, w, out=product)
        out = alloc(shape, x.dtype) if alloc is not None else xp.empty(shape, dtype=packed.dtype)
        return _unpack(packed, counts, batch, out).reshape(steps, batch, w.shape[1])

    def flops(self, node):
        x, w = node.inputs[:2]
        stack = node.inputs[3] if self.packed else x
        return 2 * (stack.shape[0] or 1) * (stack.shape[1] or 1) * (x.shape[-1] or 1) * \
            (w.shape[1] or 1)


def _take(xp, a, index, axis: int, out=None):
    """xp.take along `axis`, into `out` if given: on NumPy with mode 'clip' (the indices are in
    range; under the default 'raise' it would buffer the result and copy it into `out`), on
    CuPy, whose take has no mode, plainly."""
    if xp is np:
        return np.take(a, index, axis=axis, out=out, mode="clip")
    return xp.take(a, index, axis=axis, out=out)


def _identity(perm) -> bool:
    p = perm.get() if hasattr(perm, "get") else np.asarray(perm)
    return bool((p == np.arange(p.shape[0])).all())


def _gather_index(xp, counts, perm, steps: int, zero_row: int):
    """For each (step t, row j) of permute_rows(stack, perm, axis=1), where a stack packed by
    `counts` holds it: row perm[j] of step t, or `zero_row` once that row has finished."""
    p = xp.asarray(perm).astype(np.int64)
    c = xp.asarray(np.asarray(counts, np.int64))
    starts = xp.cumsum(c) - c
    return xp.where(p[None, :] < c[:steps, None], starts[:steps, None] + p[None, :],
                    zero_row).ravel()


class PackRows(Op):
    """The active rows of every step of a stack [L, B, N] (the first rows[t] of step t: rows
    are sorted longest first), one step after another: [sum(rows), N]; the stack as [L * B, N]
    when every row is active. A stack several products pack (the gradient loop's dz: the
    weight and the input gradient) is packed once (passes/share_packs.py).

    With `gather`, a third input `perm` sorts the batch first: the result is the pack of
    permute_rows(stack, perm, axis=1), each row taken once from the unsorted stack
    (passes/sort_rows.py: dynamic_rnn's input, which then is not sorted as a whole)."""
    name = "pack_rows"
    foldable = False

    def __init__(self, gather: bool = False):
        self.gather = bool(gather)

    def attrs(self):
        return {"gather": True} if self.gather else {}

    def infer(self, stack, rows, *perm):
        if stack.rank != 3:
            raise ShapeError(f"needs a stack [steps, batch, n], got {stack}")
        return TensorType((None, stack.shape[2]), stack.dtype)

    def compute(self, xp, stack, rows, *perm, alloc=None, copy=False):
        """`copy`: a new buffer even when every row is active (under a memory plan: the peak
        model counts one, as it cannot know before the run that every row will be active)."""
        steps, batch, n = stack.shape
        counts = _counts(rows, steps, batch)
        if copy and counts is None:
            counts = np.full(steps, batch)
        if not self.gather:
            if counts is None:
                return stack.reshape(-1, n)
            return _pack(xp, stack, counts, batch, alloc, 0)
        p = perm[0]
        if counts is None and _identity(p):
            return stack.reshape(-1, n)
        # (step t, batch row) of every packed row, worked out on the host: a few thousand ints
        counts = np.full(steps, batch) if counts is None else np.asarray(counts)
        t = np.repeat(np.arange(steps), counts)
        b = (p.get() if hasattr(p, "get") else np.asarray(p))[
            np.arange(t.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)]
        if stack.transpose(1, 0, 2).flags.c_contiguous:   # a time-major view of [B, T, n]
            flat, index = stack.transpose(1, 0, 2).reshape(-1, n), b * steps + t
        elif stack.flags.c_contiguous:
            flat, index = stack.reshape(-1, n), t * batch + b
        else:
            return stack[xp.asarray(t), xp.asarray(b)]
        out = alloc((steps * batch, n), stack.dtype, 0)[:t.shape[0]] if alloc is not None \
            else None
        return _take(xp, flat, xp.asarray(index), 0, out)


class StepRows:
    """A stack [steps, batch, n] kept packed: step t's active rows start where step t-1's end
    (`starts`, host ints). Two makers: a RowsMatMul the shrink_batch pass marked (read by loops
    only), and a loop with active rows, for the stacks no reader reads past the active rows
    (runtime/loop_kernel.ActiveRows.new_stack). `[t]` is a view of `batch` rows from there: its
    first rows[t] are step t's; a loop whose width is rounded up (ops/loop_rows.row_align)
    reads a few more, which are the next steps' rows or zeros past the end: rows of finished
    sequences, whose results the body's masks discard, as they would zeros. Readers that pack
    the active rows (_pack, _active_rows) take the packed block as it is."""
    ndim = 3

    def __init__(self, packed, counts, shape: tuple, starts: list | None = None):
        self.packed, self.shape, self.dtype = packed, shape, packed.dtype
        self.starts = starts if starts is not None else \
            np.concatenate([[0], np.cumsum(counts)]).tolist()

    def rows(self, counts, first: int = 0):
        """The packed rows of steps first..len(counts)-1 when they are `counts` of them each (a
        reader's active rows), else None."""
        end = len(counts)
        if end >= len(self.starts) or self.starts[end] - self.starts[0] != int(np.sum(counts)) \
                or not np.array_equal(np.diff(self.starts[:end + 1]), counts):
            return None
        return self.packed[self.starts[first]:self.starts[end]]

    def __getitem__(self, t):
        if isinstance(t, slice):   # the first steps ([:n]: what StepContract reads)
            if t.start not in (None, 0) or t.step not in (None, 1):
                raise IndexError(f"a packed stack takes [:n] or [t], not {t}")
            steps = len(range(*t.indices(self.shape[0])))
            return StepRows(self.packed, None, (steps,) + self.shape[1:], self.starts)
        start = self.starts[min(t, len(self.starts) - 1)]   # (steps past the counts: zeros)
        return self.packed[start:start + self.shape[1]]

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        steps, batch, n = self.shape
        return steps * batch * n

    def materialize(self):
        """The stack it stands for, [steps, batch, n] with zeros past each step's active rows,
        as an array of the packed rows' own module: CuPy rows give a CuPy array (what a
        device's to_host and a fetch read)."""
        steps, batch, n = self.shape
        counts = np.diff(self.starts)[:steps]
        if isinstance(self.packed, np.ndarray):
            out = np.empty((steps * batch, n), self.dtype)
        else:   # a device array: its own class allocates one (cupy.ndarray(shape, dtype))
            out = type(self.packed)((steps * batch, n), self.dtype)
        return _unpack(self.packed, counts, batch, out).reshape(self.shape)

    def get(self) -> np.ndarray:
        """The stack as a NumPy array, copied from the device if the rows are there (as CuPy
        arrays' get())."""
        full = self.materialize()
        return full if isinstance(full, np.ndarray) else full.get()

    def __array__(self, dtype=None, copy=None):
        """The stack it stands for (zeros past each step's active rows), for any other reader
        (a numerics check, a debugger): NumPy code sees the value RowsMatMul defines. Rows on
        a device are not copied implicitly, as CuPy refuses np.asarray of its arrays: TypeError
        (use get())."""
        if not isinstance(self.packed, np.ndarray):
            raise TypeError(f"implicit conversion of a packed stack of "
                            f"{type(self.packed).__module__}.{type(self.packed).__name__} rows "
                            "to a NumPy array is not allowed (as for CuPy arrays): use .get() "
                            "to copy it to the host, or .materialize() for an array on the "
                            "rows' device")
        return self.materialize().astype(dtype or self.dtype, copy=False)

    @property
    def __cuda_array_interface__(self):
        """For CuPy's functions (cupy.isfinite of check_numerics...): the stack it stands for,
        materialised on the device at the first request and kept with this object (the
        pointer must outlive the call that reads it)."""
        if not hasattr(self.packed, "__cuda_array_interface__"):
            raise AttributeError("__cuda_array_interface__ (the rows are not on a CUDA device)")
        full = self.__dict__.get("_full")
        if full is None:
            full = self._full = self.materialize()
        return full.__cuda_array_interface__


def step_sum(stack, n, rows=None):
    return apply(StepSum(), [stack, n] + ([rows] if rows is not None else []))


def step_contract(a, b, n, rows=None):
    return apply(StepContract(), [a, b, n] + ([rows] if rows is not None else []))


def rows_matmul(x, w, rows):
    return apply(RowsMatMul(), [x, w, rows])
