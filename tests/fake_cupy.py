"""A stand-in for CuPy on the CPU that records what a CUDA device would be asked to do.

`FakeCupy()` is a module object offering the part of CuPy's API that CupyDevice uses, so the
real class runs on it (`CupyDevice(xp=FakeCupy())`) and the tests read back:

  events        every stream and event operation, copy, pinned allocation and host read, in
                order: ("record", event, stream), ("wait_event", stream, event),
                ("memcpy", stream, kind, nbytes, device buffer), ("host_sync", what),
                ("host_read", what), ("read", device buffer) (a kernel reads it: every ufunc
                and fused kernel logs each device buffer it reads), ("pinned_alloc", nbytes),
                ("event_new", event), ("stream_new", stream); a device buffer is the start
                address of the live buffer holding the array
  events_made   CUDA events created; pinned_peak: pinned host bytes alive at most
  device_peak   device bytes alive at most, each buffer rounded up as CuPy's pool does

Device arrays are NumPy arrays of a subclass (`fake.ndarray`): kernels run eagerly on the host,
as if the compute stream finished each kernel at once. Reading a device value on the host
(bool, int, float, item, tolist, get, asnumpy) is logged as a host read. Copies on a stream
other than the compute stream are queued, not done, until something orders them: the compute
stream waiting for an event recorded after them, or a host synchronisation. So a kernel that
reads a prefetched buffer without waiting for its copy reads stale data, and a copy whose
source or destination was freed before it ran raises: ordering mistakes change results or fail.
Copies between the device and pageable (not pinned) host memory run at once and are logged as a
host synchronisation, as CUDA makes them.
"""
from __future__ import annotations

import bisect
import ctypes
import itertools
import types
import weakref

import numpy as np

from rnngraph import kernels
from rnngraph.ops.fused import Fused

DEVICE_TO_HOST, HOST_TO_DEVICE = 2, 1
POOL_UNIT = 512


def _pool_bytes(n: int) -> int:
    return 0 if n <= 0 else -(-n // POOL_UNIT) * POOL_UNIT


_BASE = np.ndarray.base.__get__   # NumPy's own base, whatever a subclass says


class _Ptr:
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


class _DeviceArray(np.ndarray):
    """Base of each fake's ndarray class (`_fake` is set on the subclass)."""
    _fake = None

    def __array_finalize__(self, obj):
        fake = type(self)._fake
        if fake is not None:
            root = self
            while isinstance(_BASE(root), np.ndarray):
                root = _BASE(root)
            fake._register_device(root)

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        # keep 0-d results on the "device" (CuPy returns 0-d arrays, not host scalars)
        return super().__array_wrap__(arr, context, False)

    @property
    def data(self):
        return _Ptr(self.ctypes.data)

    @property
    def base(self):
        """As in CuPy: the array owning the memory (a view's base is never a view). NumPy's
        own chain may pass through plain arrays (a broadcast, a wrapped result); those are
        skipped, and a plain owner is stood for by one device array viewing all of it."""
        o = self
        while True:
            b = _BASE(o)
            if not isinstance(b, np.ndarray):
                break
            o = b
        if o is self:
            return None
        if isinstance(o, _DeviceArray):
            return o
        fake = type(self)._fake
        canon = fake._canon.get(id(o))
        if canon is None:
            canon = o.view(type(self))
            fake._canon[id(o)] = canon
        return None if canon is self else canon

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # a kernel: log the device buffers it reads, then run it on plain arrays and keep the
        # results on the "device" (0-d results stay arrays, as CuPy's do)
        fake = type(self)._fake
        if fake is not None:
            fake._note_reads(inputs)
        plain = tuple(x.view(np.ndarray) if isinstance(x, _DeviceArray) else x for x in inputs)
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, _DeviceArray) else o
                                  for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        cls = type(self)

        def wrap(r):
            if isinstance(r, (np.ndarray, np.generic)):
                return np.asarray(r).view(cls)
            return r
        return tuple(wrap(r) for r in result) if isinstance(result, tuple) else wrap(result)

    def _read(self, what):
        type(self)._fake._host_read(what, self)

    def __bool__(self):
        self._read("bool")
        return np.ndarray.__bool__(self)

    def __int__(self):
        self._read("int")
        return np.ndarray.__int__(self)

    def __float__(self):
        self._read("float")
        return np.ndarray.__float__(self)

    def __index__(self):
        self._read("index")
        return np.ndarray.__index__(self)

    def item(self, *args):
        self._read("item")
        return np.ndarray.item(self, *args)

    def tolist(self):
        self._read("tolist")
        return np.ndarray.tolist(self)

    def get(self, stream=None):
        self._read("get")
        return np.array(self, subok=False)


class FakeEvent:
    def __init__(self, fake, disable_timing=False):
        self.fake = fake
        self.id = next(fake._ids)
        self.stream = None       # where it was last recorded
        self.position = 0        # how many of that stream's queued operations precede it
        self.records = 0         # times recorded
        fake.events_made += 1
        fake.events.append(("event_new", self.id))

    def record(self, stream=None):
        stream = stream or self.fake.cuda.get_current_stream()
        self.stream, self.position = stream, stream.enqueued
        self.records += 1
        self.fake.events.append(("record", self.id, stream.name))

    def synchronize(self):
        self.fake.events.append(("host_sync", "event.synchronize"))
        if self.stream is not None:
            self.stream.run_until(self.position)

    @property
    def done(self):
        self.fake.events.append(("query", self.id))
        return self.stream is None or self.stream.done >= self.position


class FakeStream:
    def __init__(self, fake, name, ptr, eager=False):
        self.fake, self.name, self.ptr, self.eager = fake, name, ptr, eager
        self.queue: list = []   # operations not run yet
        self.enqueued = 0       # operations ever queued
        self.done = 0           # operations run

    def enqueue(self, op):
        self.enqueued += 1
        if self.eager:
            op()
            self.done += 1
        else:
            self.queue.append(op)

    def run_until(self, position: int) -> None:
        while self.done < position:
            op = self.queue.pop(0)
            op()
            self.done += 1

    def wait_event(self, event):
        self.fake.events.append(("wait_event", self.name, event.id))
        if event.stream is None or event.stream is self:
            return
        if self.eager:       # the compute stream "runs" now: what it waits for must be done
            event.stream.run_until(event.position)
        else:                # a queued stream: run the event's stream up to it first
            src, pos = event.stream, event.position
            self.enqueue(lambda: src.run_until(pos))

    def synchronize(self):
        self.fake.events.append(("host_sync", f"{self.name}.synchronize"))
        self.run_until(self.enqueued)


class _Runtime:
    memcpyDeviceToHost = DEVICE_TO_HOST
    memcpyHostToDevice = HOST_TO_DEVICE

    def __init__(self, fake):
        self.fake = fake

    def memcpyAsync(self, dst, src, size, kind, stream):
        self.memcpy2DAsync(dst, size, src, size, size, 1, kind, stream)

    def memcpy2DAsync(self, dst, dpitch, src, spitch, width, height, kind, stream):
        fake = self.fake
        s = fake._streams[stream]
        host, dev = (dst, src) if kind == DEVICE_TO_HOST else (src, dst)
        hspan = dpitch if kind == DEVICE_TO_HOST else spitch
        dspan = spitch if kind == DEVICE_TO_HOST else dpitch
        nbytes = width * height
        dev_ref = fake._owner(dev, dspan * (height - 1) + width, fake._device)
        host_ref = fake._owner(host, hspan * (height - 1) + width, fake._pinned)
        if dev_ref is None:
            raise AssertionError(f"memcpy: {dev:#x} is not in a live device buffer")
        fake.events.append(("memcpy", s.name, "D2H" if kind == DEVICE_TO_HOST else "H2D",
                            nbytes, dev_ref().ctypes.data))
        fake.copies.append((s.name, kind, nbytes))

        def run():
            for ref, what in ((dev_ref, "device"), (host_ref, "host")):
                if ref is not None and ref() is None:
                    raise AssertionError(f"a queued copy ran after its {what} buffer was freed")
            for r in range(height):
                ctypes.memmove(dst + r * dpitch, src + r * spitch, width)
        if host_ref is None:   # pageable memory: CUDA copies it synchronously
            fake.events.append(("host_sync", "pageable memcpy"))
            s.run_until(s.enqueued)
            run()
            return
        s.enqueue(run)


class _CudaDevice:
    def __init__(self, fake, device_id=None):
        self.id = 0 if device_id is None else device_id
        self.compute_capability = fake.compute_capability

    def use(self):
        pass


class FakeCupy(types.ModuleType):
    """A fresh fake `cupy` module (see the module docstring)."""

    def __init__(self, compute_capability: str = "90"):
        super().__init__("fake_cupy")
        self.compute_capability = compute_capability
        self.events: list = []
        self.copies: list = []
        self.events_made = 0
        self.streams_made = 0
        self._ids = itertools.count(1)
        self.ndarray = type("ndarray", (_DeviceArray,), {"_fake": self})
        # live buffers: sorted start addresses -> (end, weakref)
        self._canon = weakref.WeakValueDictionary()   # id(plain owner) -> its device view
        self._device = ([], {})
        self._pinned = ([], {})
        self.device_current = self.device_peak = 0
        self.pinned_current = self.pinned_peak = 0
        self.pinned_allocs: list = []
        compute = FakeStream(self, "compute", 0, eager=True)
        self._streams = {0: compute}
        self._current = compute
        fake = self

        def stream(non_blocking=False):
            fake.streams_made += 1
            s = FakeStream(fake, f"stream{fake.streams_made}", 1000 + fake.streams_made)
            fake._streams[s.ptr] = s
            fake.events.append(("stream_new", s.name))
            return s

        def alloc_pinned_memory(size):
            buf = np.empty(int(size), np.uint8)
            fake.pinned_allocs.append(int(size))
            fake.events.append(("pinned_alloc", int(size)))
            fake._track(buf, fake._pinned, "pinned")
            return buf

        self.cuda = types.SimpleNamespace(
            Stream=stream,
            Event=lambda disable_timing=False: FakeEvent(fake, disable_timing),
            get_current_stream=lambda: fake._current,
            runtime=_Runtime(self),
            alloc_pinned_memory=alloc_pinned_memory,
            Device=lambda device_id=None: _CudaDevice(fake, device_id),
            is_available=lambda: True)

    # --- what the tests read --------------------------------------------------------------------
    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e[0] == kind)

    def mark(self) -> int:
        """A position in the log (to look at what happened after it)."""
        return len(self.events)

    def since(self, position: int) -> list:
        return self.events[position:]

    # --- arrays ---------------------------------------------------------------------------------
    def _wrap(self, x):
        if isinstance(x, np.ndarray) and not isinstance(x, self.ndarray):
            return x.view(self.ndarray)
        if isinstance(x, tuple):
            return tuple(self._wrap(v) for v in x)
        if isinstance(x, list):
            return [self._wrap(v) for v in x]
        return x

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, (np.ufunc, type, types.ModuleType)) or not callable(attr):
            return attr       # ufuncs keep the subclass (and .reduce/.outer); dtypes, modules

        def call(*args, **kwargs):
            return self._wrap(attr(*args, **kwargs))
        call.__name__ = name
        self.__dict__[name] = call
        return call

    def asnumpy(self, a, stream=None):
        if isinstance(a, self.ndarray):
            self._host_read("asnumpy", a)
        return np.array(a, subok=False)

    def _note_reads(self, arrays) -> None:
        """Log ("read", buffer) for each device array of `arrays` (a kernel reads them)."""
        for x in arrays:
            if isinstance(x, self.ndarray):
                ref = self._owner(x.ctypes.data, max(x.nbytes, 1), self._device)
                if ref is not None:
                    self.events.append(("read", ref().ctypes.data))

    def buffer_of(self, a) -> int | None:
        """The start address of the live device buffer holding array `a` (as logged)."""
        ref = self._owner(a.ctypes.data, max(a.nbytes, 1), self._device)
        return None if ref is None else ref().ctypes.data

    def _host_read(self, what, a):
        self.events.append(("host_read", what, tuple(getattr(a, "shape", ()))))

    # --- buffer registry ------------------------------------------------------------------------
    def _register_device(self, root) -> None:
        starts, live = self._device
        addr = root.ctypes.data
        e = live.get(addr)
        if e is not None and e[1]() is root:
            return
        self._track(root, self._device, "device")

    def _track(self, buf, registry, kind) -> None:
        starts, live = registry
        addr, n = buf.ctypes.data, buf.nbytes
        if addr in live:                     # an address freed and reused before its finalizer
            self._untrack(registry, addr, live[addr][2], kind)
        ref = weakref.ref(buf)
        live[addr] = (addr + n, ref, n)
        bisect.insort(starts, addr)
        weakref.finalize(buf, self._untrack_if, registry, addr, ref, n, kind)
        if kind == "device":
            self.device_current += _pool_bytes(n)
            self.device_peak = max(self.device_peak, self.device_current)
        else:
            self.pinned_current += n
            self.pinned_peak = max(self.pinned_peak, self.pinned_current)

    def _untrack_if(self, registry, addr, ref, n, kind) -> None:
        e = registry[1].get(addr)
        if e is not None and e[1] is ref:
            self._untrack(registry, addr, n, kind)

    def _untrack(self, registry, addr, n, kind) -> None:
        starts, live = registry
        del live[addr]
        i = bisect.bisect_left(starts, addr)
        del starts[i]
        if kind == "device":
            self.device_current -= _pool_bytes(n)
        else:
            self.pinned_current -= n

    def reset_peaks(self) -> None:
        self.device_peak = self.device_current
        self.pinned_peak = self.pinned_current

    def _owner(self, addr, nbytes, registry):
        """A weakref to the live buffer of `registry` holding [addr, addr + nbytes), or None."""
        starts, live = registry
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0:
            return None
        end, ref, _ = live[starts[i]]
        return ref if addr + nbytes <= end and ref() is not None else None


@kernels.register(Fused, "fake_cupy")
def _one_kernel(op, node, program):
    """A fused group as one kernel, as the CuPy backend compiles it: its outputs are the only
    device buffers it allocates (the reference evaluation's intermediates stay on the host,
    unrecorded)."""
    fake = program.ctx.xp

    def run(*args):
        fake._note_reads(args)
        plain = [a.view(np.ndarray) if isinstance(a, np.ndarray) else a for a in args]
        return tuple(fake._wrap(np.array(v, subok=False)) for v in op.compute(np, *plain))
    return run
