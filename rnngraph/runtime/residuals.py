"""Saved per-step tensors that do not live on the device as a whole stack.

A forward loop whose plan places a residual on the host or recomputes it returns, in place of
the stack, a handle that the backward loop slices like an array (`stack[t]`):

  OffloadedStack    rows were copied to host memory after each forward step (OffloadWriter);
                    `stack[t]` waits for row t's copy back and prefetches the next rows the
                    backward loop will read, at most `depth` rows on the device at once
                    (where host memory is the device's, in an untracked run: row t in place).
  RecomputedStack   the forward loop kept its carried state every k steps (Replayer);
                    `stack[t]` reruns the forward body from the checkpoint before t over that
                    segment of k steps, regenerating the segment's residuals at once.

Handles report the device arrays they hold through `device_buffers()` (byte accounting) and
free their working buffers in `end_pass()`, which the backward loop calls when it is done.

A row a handle hands out (`stack[t]`) may live in a buffer the handle recycles for a later
read: it stays valid until the next read of that handle, and no longer. A row read in place
(`direct`) lives in the host stack, which goes back to the device's host pool when the handle
is closed: nothing may keep it past the run (a loop copies a final state that is such a view). A loop reading one
handle both per step and in chunk blocks (ChunkSource) therefore cuts the block of step t
before it slices step t's rows (ChunkSource.cut), and an offloaded block is copied straight
from the host rows (`read_block`), past the prefetch buffers the per-step reads go through.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..errors import OutOfMemoryError
from ..memory.checkpoints import advance_plan


class SavedStack:
    """Base of residual handles: sliced by the backward loop, not by user code."""
    placement = "device"

    @property
    def shape(self):
        return (self.n,) + tuple(self.row_shape)

    def __len__(self):
        return self.n

    def device_buffers(self):
        return ()

    def read_block(self, lo: int, hi: int):
        """Rows [lo, hi) as one new [hi - lo, ...] device array, each row copied as it is
        read (the next read may reuse the buffer it came in)."""
        first = self[lo]
        out = self.dev.xp.empty((hi - lo,) + tuple(first.shape), first.dtype)
        out[0] = first
        for t in range(lo + 1, hi):
            out[t - lo] = self[t]
        return out

    def end_pass(self) -> None:
        pass

    def materialize(self):
        """The whole stack as one device array (for a fetch; costs the full stack's bytes)."""
        xp = self.dev.xp
        rows = [xp.array(self[t], copy=True) for t in range(self.n)]  # slices get overwritten
        out = xp.stack(rows) if rows else \
            xp.zeros((0,) + tuple(d or 0 for d in self.row_shape), self.dtype)
        self.end_pass()
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.dev.to_host(self.materialize())
        return a if dtype is None else a.astype(dtype)


def _host_row(rows, t: int):
    """Row t of a host stack (Device.host_stack) as a view, also where rows are scalars: an
    array's `[t, ...]` (its `[t]` would be a NumPy scalar), a chunked stack's `[t]`."""
    return rows[t, ...] if isinstance(rows, np.ndarray) else rows[t]


# --- fed sequences left on the host -----------------------------------------------------------
STAGED_ROWS = 4   # pinned row buffers per FedRows cursor where copies are asynchronous


class FedRows(SavedStack):
    """A fed value a memory plan leaves in host memory (ops/host_rows.py), or a loop output
    written there (`kind` "loop output"), read by loops as a [T, ...] sequence (its rows,
    axis 1, reordered by `perm` where given: a host gather as they are copied): `rows[t]`
    copies row t into one device buffer of this handle's own (valid until its next read;
    through pinned staging rows where copies are asynchronous), `read_block` copies a
    chunk's rows into a new device array.

    Each loop run reads through its own `cursor()` (a forward loop, the backward loop and a
    replay of the forward loop each hold one row at a time), and ends it when it is done."""
    placement = "host"

    def __init__(self, dev, host, time_axis: int, name: str, perm=None, direct=False,
                 kind: str = "fed value"):
        self.dev = dev
        self.direct = direct   # rows read where they lie (Device.host_is_device, untracked)
        self.host = np.moveaxis(np.asarray(host), int(time_axis), 0)   # a view: no copy
        self.perm = None if perm is None else np.asarray(perm)   # rows (axis 1) in this order
        self.n = self.host.shape[0]
        self.row_shape, self.dtype = tuple(self.host.shape[1:]), self.host.dtype
        self.name = name
        self.kind = kind
        self.what = f"a row of {kind} '{name}'"
        self._buf = None
        self._t = None
        self._stage: list = []   # [pinned row, ticket of its last copy] (asynchronous copies)

    def cursor(self) -> "FedRows":
        """A handle on the same host rows with a row buffer of its own."""
        c = FedRows.__new__(FedRows)
        c.__dict__.update(self.__dict__)
        c._buf, c._t, c._stage = None, None, []
        return c

    def _staged(self, row: np.ndarray) -> tuple:
        """(the host array to copy `row` from, its staging slot or None). Where copies are
        asynchronous (a GPU), the row goes through one of STAGED_ROWS pinned buffers of this
        cursor's own, each reused once its previous copy is done (the host runs at most that
        many reads ahead of the copies): a copy from pageable memory would make the host wait
        for all the device's queued work at every step."""
        if not getattr(self.dev.profile, "async_copies", False):
            return row, None
        if not self._stage:
            self._stage = [[self.dev.host_output(self.row_shape, self.dtype), None]
                           for _ in range(STAGED_ROWS)]
        slot = self._stage.pop(0)   # (the least recently used: round the ring)
        self._stage.append(slot)
        self.dev.wait_host(slot[1])   # (the copy out of this buffer STAGED_ROWS reads ago)
        slot[1] = None
        np.copyto(slot[0], row)
        return slot[0], slot

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        rows = self.host[lo:hi]
        if self.perm is not None:
            return np.take(rows, self.perm, axis=1)
        return rows if rows.flags.c_contiguous else np.ascontiguousarray(rows)

    def __getitem__(self, t):
        t = int(t)
        if t < 0:
            t += self.n
        if not 0 <= t < self.n:
            raise IndexError(f"step {t} of {self.kind} '{self.name}' with {self.n} steps")
        if self.direct:
            return self._rows(t, t + 1)[0, ...]
        if self._t == t:
            return self._buf
        dev = self.dev
        after = None
        if self._buf is None:
            self._buf = dev.empty(self.row_shape, self.dtype, self.what, reuse=True)
        else:
            after = dev.mark()   # (the copy waits for the kernels reading the row before)
        self._t = None
        src, slot = self._staged(self._rows(t, t + 1)[0, ...])
        ticket = dev.copy_to_device(src, self._buf, after=after)
        if slot is not None:   # (an event of its own: the copy's goes back at `wait`, and the
            slot[1] = dev.copies_mark()   # next copy, maybe an offload, records it again)
        dev.wait(ticket)
        self._t = t
        return self._buf

    def read_block(self, lo: int, hi: int):
        """Rows [lo, hi) as one new device array, copied at once."""
        out = self.dev.xp.empty((hi - lo,) + self.row_shape, self.dtype)
        self.dev.wait(self.dev.copy_to_device(self._rows(lo, hi), out))
        return out

    def materialize(self):
        return self.dev.asarray(self._rows(0, self.n))

    def end_pass(self) -> None:
        for slot in self._stage:   # (the pinned rows go once their copies are done)
            self.dev.wait_host(slot[1])
        if self._buf is not None:
            self.dev.free(self._buf, reuse=True)
        self._buf, self._t, self._stage = None, None, []

    def __del__(self):
        try:
            self.end_pass()
        except Exception:  # interpreter shutdown
            pass


# --- offload ----------------------------------------------------------------------------------
class RowCopies:
    """Rows on their way to host memory: with asynchronous copies at most `depth` in flight,
    each device row released (`release`) once its copy is done. The base of OffloadWriter and
    of host_outputs.OutputWriter."""

    def __init__(self, dev, depth: int, release):
        self.dev, self.depth, self.release = dev, max(1, depth), release
        self.inflight: deque = deque()

    def send(self, r, dst) -> None:
        """dst[...] = r (a host row), r released once the copy is done."""
        ticket = self.dev.copy_to_host(r, dst)
        if ticket is None:
            if self.release is not None:
                self.release(r)
            return
        self.inflight.append((ticket, r))
        if len(self.inflight) > self.depth:
            self._retire()

    def _retire(self, wait_host: bool = False) -> None:
        ticket, r = self.inflight.popleft()
        if wait_host:   # (the host reads the rows next: the copy must be done)
            self.dev.wait_host(ticket)
        self.dev.wait(ticket)   # the compute stream (not the host) waits for the copy
        if self.release is not None:
            self.release(r)


class OffloadWriter(RowCopies):
    """Copies one residual's rows to a host stack as the forward loop produces them.

    `n`: rows to reserve (None: unknown, rows are allocated one at a time). With asynchronous
    copies at most `depth` rows are in flight; the device row is released when its copy is done.
    """

    def __init__(self, dev, n, depth, release, name, host_budget=None, owner="", direct=False):
        super().__init__(dev, depth, release)
        self.n, self.name = n, name
        self.direct = direct   # the stack's reads return host rows in place (OffloadedStack)
        self.owner = owner   # how errors name the loop saving it (Node.describe())
        self.host_budget = host_budget   # pinned host bytes the device may take (dev.host_stack)
        self.rows = None

    def put(self, t: int, r) -> None:
        dev = self.dev
        try:
            if self.rows is None:
                self.row_shape, self.dtype = r.shape, r.dtype
                self.rows = dev.host_stack((self.n,) + r.shape, r.dtype, self.host_budget) \
                    if self.n is not None else []
            if self.n is None:
                dst = _host_row(dev.host_stack((1,) + r.shape, r.dtype, self.host_budget), 0)
                self.rows.append(dst)
            else:
                dst = _host_row(self.rows, t)
        except OutOfMemoryError as e:   # (the device does not know which stack it was for)
            raise OutOfMemoryError(f"offloading the saved stack {self.name} of "
                                   f"{self.owner or 'a loop'}: {e}") from None
        self.send(r, dst)

    def finish(self, steps: int, descending: bool, depth: int) -> "OffloadedStack":
        while self.inflight:
            self._retire()
        return OffloadedStack(self.dev, self.rows, steps, self.row_shape, self.dtype, depth,
                              descending, self.name, self.n is None, self.direct)


class OffloadedStack(SavedStack):
    placement = "host"

    def __init__(self, dev, rows, n, row_shape, dtype, depth, descending, name, row_list,
                 direct=False):
        self.dev, self.rows, self.n = dev, rows, n
        self.direct = direct   # rows read in place: host memory is the device's (no prefetch)
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        self.depth = max(1, int(depth))
        self.step = -1 if descending else 1
        self.what = f"a prefetch buffer of saved tensor '{name}'"
        self._row_list = row_list
        self._ready: dict = {}     # t -> (device buffer, ticket)
        self._spare: list = []
        self._last = None          # (t, buffer) handed out last

    def __getitem__(self, t):
        t = int(t)
        if t < 0:
            t += self.n
        if self.direct:
            if not 0 <= t < self.n:
                raise IndexError(f"step {t} of a saved stack with {self.n} steps")
            return _host_row(self.rows, t)
        if self._last is not None and self._last[0] == t:   # read twice in a row (one step
            return self._last[1]                             # slicing one stack twice)
        if self._last is not None:                 # the step that read it is queued: a copy
            self._spare.append((self._last[1], self.dev.mark()))  # into it waits for that
            self._last = None
        ready = self._ready
        buf, ticket = ready.pop(t, None) or self._fetch(t)
        self.dev.wait(ticket)
        self._last = (t, buf)
        step, n = self.step, self.n
        end = t + step * self.depth
        if len(ready) >= self.depth:              # the reads jumped: drop rows not ahead of t
            for u in [u for u in ready if not (0 < (u - t) * step < self.depth)]:
                self._spare.append((ready.pop(u)[0], None))   # (no reader: copies in order)
        u = t + step
        while u != end and 0 <= u < n:            # prefetch the next depth-1 rows
            if u not in ready:
                ready[u] = self._fetch(u)
            u += step
        return buf

    def read_block(self, lo: int, hi: int):
        """Rows [lo, hi) copied from the host stack straight into one new device array: the
        prefetch buffers and the per-step reads' order are left alone (a row handed out
        stays valid)."""
        dev = self.dev
        out = dev.xp.empty((hi - lo,) + self.row_shape, self.dtype)
        for t in range(lo, hi):
            dev.wait(dev.copy_to_device(_host_row(self.rows, t), out[t - lo, ...]))
        return out

    def _fetch(self, t):
        buf, after = self._spare.pop() if self._spare else \
            (self.dev.empty(self.row_shape, self.dtype, self.what, reuse=True), None)
        return buf, self.dev.copy_to_device(_host_row(self.rows, t), buf, after=after)

    def end_pass(self) -> None:
        bufs = [b for b, _ in self._spare] + [b for b, _ in self._ready.values()]
        if self._last is not None:
            bufs.append(self._last[1])
        for _, ticket in self._ready.values():   # prefetches never read: the compute stream
            self.dev.wait(ticket)                # waits for them before reusing the buffers
        for b in bufs:
            self.dev.free(b, reuse=True)
        self._spare, self._ready, self._last = [], {}, None

    def close(self) -> None:
        rows, self.rows = self.rows, None
        if rows is None:
            return
        for r in (rows if self._row_list else [rows]):
            self.dev.host_free(r)

    def __del__(self):
        try:
            self.end_pass()
            self.close()
        except Exception:  # interpreter shutdown
            pass


# --- recompute --------------------------------------------------------------------------------
class Replayer:
    """Checkpoints of a forward loop's carried state, and the replay of one segment.

    prog: body program returning (next carried..., recomputed residuals...); k: checkpoint
    interval in executed steps; steps are executed in order t = 0.. (or n-1.. when reverse).

    Uniform schedule (an int k): the state every k steps; reading step t replays its segment
    of k steps and keeps all k rows of residuals. Binomial schedule (k a BinomialEvery, see
    memory/checkpoints.py): at most `k.slots` states besides the initial one, placed by
    Revolve's rule; reading step t advances from the latest state before it (storing states
    on the way), then reruns step t alone for its residuals (one row kept). Both replay the
    same body program on the same inputs, so the rows are the forward pass's rows bit for bit.
    """

    def __init__(self, dev, prog, n_carried, invariants, seqs, k, n, reverse, tracked, names):
        self.dev, self.prog, self.kc = dev, prog, n_carried
        self.invariants, self.seqs = list(invariants), list(seqs)
        # (a chunked loop's prologue rows: their blocks are cut before a step's rows are
        # sliced, see ChunkSource.cut)
        self.sources = list({id(s.source): s.source for s in self.seqs
                             if isinstance(s, ChunkRows)}.values())
        self.slots = int(getattr(k, "slots", 0)) if n is not None else 0
        self.k = 1 if self.slots else max(1, int(k))
        self.n_trip, self.reverse, self.tracked = n, reverse, tracked
        self.names = names
        self.meter = dev.meter if tracked else None
        self.checkpoints: list = []
        self.steps = 0
        self.seg = None
        self.bufs = None
        # binomial schedule: [(position, carried)] stored beyond the initial state (ours: one
        # reference each, released when dropped), and where the forward pass stores next
        self.stack: list = []
        self._offered = 0
        self._forward = iter(advance_plan(0, n - 1, self.slots)) if self.slots and n else None
        self._next = self._next_store()

    def _next_store(self):
        for q, store in self._forward or ():
            if store:
                return q
        return None

    def add_checkpoint(self, carried) -> None:
        if self.slots:
            i, self._offered = self._offered, self._offered + 1
            if i == 0:
                self._keep_initial(carried)
            elif i == self._next:
                if self.meter is not None:
                    for c in carried:
                        self.meter.retain(c)
                self.stack.append((i, tuple(carried)))
                self._next = self._next_store()
            return
        self._keep_initial(carried)

    def _keep_initial(self, carried) -> None:
        if self.meter is not None:
            for c in carried:
                self.meter.retain(c)
        self.checkpoints.append(tuple(carried))

    def finish(self, steps: int) -> None:
        self.steps = steps

    def checkpoint_arrays(self):
        return [c for cp in self.checkpoints for c in cp]

    def device_buffers(self):
        return self.checkpoint_arrays() + self.invariants + \
            [s for s in self.seqs if not isinstance(s, SavedStack)]

    def _t(self, i: int) -> int:
        return self.n_trip - 1 - i if (self.reverse and self.n_trip is not None) else i

    def _i(self, t: int) -> int:
        return self.n_trip - 1 - t if (self.reverse and self.n_trip is not None) else t

    def get(self, j: int, t: int):
        i = self._i(int(t))
        if self.slots:
            if self.seg != i:
                self._tape(i)
            return self.bufs[j][0]
        seg = i // self.k
        if seg != self.seg:
            self._replay(seg)
        return self.bufs[j][i - seg * self.k]

    def _replay(self, seg: int) -> None:
        start, stop = seg * self.k, min(seg * self.k + self.k, self.steps)
        carried, owned = self.checkpoints[seg], False
        release = self.meter.release if self.meter is not None else None
        kc, invariants, seqs = self.kc, self.invariants, self.seqs
        for i in range(start, stop):
            t = self._t(i)
            for source in self.sources:
                source.cut(t)
            res = self.prog.run([np.int32(t), *carried, *invariants, *[s[t] for s in seqs]])
            if self.bufs is None:
                self.bufs = [self.dev.empty((self.k,) + r.shape, r.dtype,
                                            f"the replay buffer of saved tensor '{name}'",
                                            reuse=True, count=self.tracked)
                             for r, name in zip(res[kc:], self.names)]
            for buf, r in zip(self.bufs, res[kc:]):
                buf[i - start] = r
                if release is not None:
                    release(r)
            if release is not None and owned:
                for c in carried:
                    release(c)
            carried, owned = res[:kc], True
        if release is not None and owned:
            for c in carried:
                release(c)
        self.seg = seg

    # --- binomial schedule -------------------------------------------------------------------
    def _step(self, i: int, carried):
        t = self._t(i)
        for source in self.sources:
            source.cut(t)
        return self.prog.run([np.int32(t), *carried, *self.invariants,
                              *[s[t] for s in self.seqs]])

    def _drop(self, carried) -> None:
        if self.meter is not None:
            for c in carried:
                self.meter.release(c)

    def _tape(self, i: int) -> None:
        """Make the residual rows of step i current: advance from the latest stored state at
        or before i (storing states where the schedule says), then run step i."""
        stack = self.stack
        while stack and stack[-1][0] > i:   # states past i are never asked for again
            self._drop(stack.pop()[1])
        p, carried = stack[-1] if stack else (0, self.checkpoints[0])
        owned = False
        kc = self.kc
        for q, store in advance_plan(p, i, self.slots - len(stack)):
            while p < q:
                res = self._step(p, carried)
                self._drop(res[kc:])
                if owned:
                    self._drop(carried)
                carried, owned, p = tuple(res[:kc]), True, p + 1
            if store:
                stack.append((q, carried))
                owned = False
        res = self._step(i, carried)
        if owned:
            self._drop(carried)
        self._drop(res[:kc])
        if self.bufs is None:
            self.bufs = [self.dev.empty((1,) + r.shape, r.dtype,
                                        f"the replay buffer of saved tensor '{name}'",
                                        reuse=True, count=self.tracked)
                         for r, name in zip(res[kc:], self.names)]
        for buf, r in zip(self.bufs, res[kc:]):
            buf[0] = r
        self._drop(res[kc:])
        self.seg = i

    def end_pass(self) -> None:
        if self.bufs is not None:
            for b in self.bufs:
                self.dev.free(b, reuse=True)
        self.bufs, self.seg = None, None
        for s in self.seqs:   # (a chunked loop's prologue rows: their block goes too; the
            if isinstance(s, (ChunkRows, FedRows)):   # row of a fed sequence a replay read)
                s.end_pass()
        while self.stack and self.slots:   # a later pass starts again from the initial state
            self._drop(self.stack.pop()[1])


class RecomputedStack(SavedStack):
    placement = "recompute"

    def __init__(self, replayer: Replayer, j: int, row_shape, dtype):
        self.replayer, self.j = replayer, j
        self.dev = replayer.dev
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)

    @property
    def n(self):
        return self.replayer.steps

    def __getitem__(self, t):
        t = int(t)
        return self.replayer.get(self.j, t + self.n if t < 0 else t)

    def device_buffers(self):
        return self.replayer.device_buffers()

    def end_pass(self) -> None:
        self.replayer.end_pass()


# --- chunked loops ----------------------------------------------------------------------------
class ChunkSource:
    """The chunk prologue's results (ops/loop.py) for one loop run, one block at a time.

    Block c holds steps [c*C, min((c+1)*C, n)); it is computed when a step first reads a row
    of it, after the previous block is dropped, so at most one block is on the device. `prog`
    maps (invariants..., sequence blocks...) to the prologue's [m, ...] results; `seqs` are the
    sequence inputs the blocks are cut from (arrays, or handles read row by row: a block read
    from one is a new array, counted while the prologue runs). In a tracked run the results
    are the caller's (one reference each), released on drop."""

    def __init__(self, dev, prog, invariants, seqs, steps: int, n: int, tracked: bool):
        self.dev, self.prog = dev, prog
        self.invariants, self.seqs = list(invariants), list(seqs)
        self.C, self.n = int(steps), int(n)
        self.release = dev.meter.release if tracked else None
        self.block, self.values = -1, None
        self.blocks_run = 0

    def rows(self, j: int) -> "ChunkRows":
        return ChunkRows(self, j)

    def at(self, j: int, t: int):
        c = t // self.C
        if c != self.block:
            self._compute(c)
        return self.values[j][t - c * self.C]

    def cut(self, t: int) -> None:
        """Compute the block holding step t now, if it is not the current one. A loop calls
        this before it slices step t's sequence rows: cutting a block reads residual handles,
        which may recycle the buffer of a row they handed out before."""
        c = t // self.C
        if c != self.block:
            self._compute(c)

    def _compute(self, c: int) -> None:
        self.drop()
        lo = c * self.C
        hi = min(lo + self.C, self.n)
        blocks = [s.read_block(lo, hi) if isinstance(s, SavedStack) else s[lo:hi]
                  for s in self.seqs]
        # a block read from a handle is a new device array: counted while the prologue runs
        # (and after, by the results that are views of it)
        fresh = [b for b, s in zip(blocks, self.seqs) if isinstance(s, SavedStack)] \
            if self.release is not None else []
        for b in fresh:
            self.dev.meter.allocate(b, "a chunk block of a sequence input not on the device")
        try:
            self.values = self.prog.run([*self.invariants, *blocks])
        finally:
            for b in fresh:
                self.release(b)
        self.block = c
        self.blocks_run += 1

    def drop(self) -> None:
        if self.values is not None and self.release is not None:
            for v in self.values:
                self.release(v)
        self.block, self.values = -1, None


class ChunkRows(SavedStack):
    """Result j of a ChunkSource, sliced by step like a sequence input (`rows[t]`)."""

    def __init__(self, source: ChunkSource, j: int):
        self.source, self.j = source, j
        self.dev = source.dev

    @property
    def n(self):
        return self.source.n

    def __getitem__(self, t):
        return self.source.at(self.j, int(t))

    def end_pass(self) -> None:
        self.source.drop()
