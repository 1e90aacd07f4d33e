"""Session: compile once per (fetches, feeds), run many times (TensorFlow-1 style)."""
from __future__ import annotations

import contextlib
import gc
import logging
import threading

import numpy as np

from ..errors import (InvalidArgumentError, NumericsError, OutOfMemoryError, take_interrupt,
                      user_location)
from ..ir.graph import Graph, get_default_graph
from ..kernels import feature
from ..memory.shapes import infer_shapes
from ..ir.value import Value, install_operators
from ..ops.sources import assign
from .devices import get_device
from .fetches import flatten
from ..passes.pipeline import enabled_passes, optimize
from ..passes.rewrite import clone
from . import planning
from . import stream_guard   # (opt-in streaming stands down where it would raise the peak)
from .program import CompileContext, Program, unfed_placeholder
# (register the kernels of loops, host_rows and the state ops)
from . import fed_rows, loop_kernel, state_kernels  # noqa: F401
from . import transfer  # noqa: F401  (the kernels of to_host / to_device: spilled values)
from .variables import VariableStore
from .compat import ConfigProto, check_config
from . import placement

_default_sessions = threading.local()
_log = logging.getLogger("rnngraph")
HOT_AFTER = 3   # runs of a program on NumPy kernels before accelerate="auto" compiles it


@contextlib.contextmanager
def gc_paused():
    """Compiling (or decoding a saved graph) makes many small objects that all stay alive:
    Python's cyclic collector would rescan them again and again (a third of the compile time
    of a 1000-step static graph). Restored afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def get_default_session() -> "Session":
    stack = getattr(_default_sessions, "stack", [])
    if not stack:
        raise RuntimeError("no default session: use `with rg.Session() as sess:` or pass session=")
    return stack[-1]


class Session:
    """Runs a graph on a device. Variables live here; programs are compiled once and cached.

    Args:
      target: TF1's first argument, the execution engine: only '' (this process). A graph
        there is the graph to run (rnngraph's `rg.Session(graph)`). After a target string the
        next two positional arguments are TF1's graph and config: `rg.Session('', g, config)`.
      graph: the graph to run (default: the default graph).
      device: 'cpu' (NumPy), 'gpu' (CuPy), 'auto', or a Device.
      seed: seeds variable initializers (same seed, same initial values in any session).
      passes: compiler passes: True (all), False (none) or {name: bool}; see passes/pipeline.py.
      memory_budget: device bytes the run must fit in: the memory planner then decides, per
        saved per-step tensor, keep / offload to host / recompute (see `memory_plan`). Runs on
        a device with a capacity (simulated, GPU) are measured: `last_run_report` holds the
        peak bytes and the bytes moved; on the CPU only with `run(report=True)`. A budget no
        plan can meet raises OutOfMemoryError before running.
      memory_strategy: "auto" (by the planner's cost model), or only "offload" or "recompute".
      host_budget: host bytes that offloaded tensors may take (default: the device's host
        capacity, else the RAM available when the run is planned); the planner recomputes
        instead of offloading what would not fit.
      check_numerics: check every floating-point value (fed or computed, inside loops too) and
        raise NumericsError naming the first node that produced NaN or Inf and the line that
        built it. A debugging aid: it costs a pass over every tensor, and turns fusion off so
        errors name the original op.
      accelerate: the optional accelerated CPU backend (numba: fused kernels, the packed
        per-step GEMM). "auto" (the default) runs a new program on NumPy kernels for
        its first runs and compiles it with the backend once it has run HOT_AFTER times (so a
        first result never waits for compilation; the switch is logged at INFO level on the
        "rnngraph" logger); True compiles from the first run; False never uses it. The results
        are the same up to float32 rounding of tanh and sigmoid.
      compile_loops: with the accelerated backend, run each loop whose body it can compile
        (matrix products, fused kernels, constants, add/sub/mul, concat) as one compiled
        function per chunk of steps instead of Python calls per step; the same bits either
        way. False keeps every loop's steps in Python (to compare, or to debug).
    """

    def __init__(self, target=None, device="cpu", seed: int = 0, passes=True,
                 memory_budget: int | None = None, memory_strategy: str = "auto",
                 check_numerics: bool = False, accelerate="auto", host_budget: int | None = None,
                 config=None, graph: Graph | None = None, compile_loops: bool = True):
        if target is not None and not isinstance(target, str):   # rg.Session(graph)
            if graph is not None:
                raise TypeError("Session: the graph is given twice (first and as graph=)")
            target, graph = "", target
        elif isinstance(target, str):   # TF1's positional order: Session(target, graph, config)
            if graph is None and (device is None or isinstance(device, Graph)):
                graph, device = device, "cpu"
            if config is None and isinstance(seed, ConfigProto):
                config, seed = seed, 0
        memory_budget = planning.check_budget(memory_budget)   # (bad arguments: nothing built)
        self.config = check_config(config, target)   # TF1's config=ConfigProto(...), target=''
        host_budget = planning.check_budget(host_budget, "host_budget")
        if graph is not None and not isinstance(graph, Graph):
            raise TypeError(f"Session: graph must be an rg.Graph, got {type(graph).__name__}")
        self.graph = (graph if graph is not None else get_default_graph()).root
        enabled_passes(passes)  # reject unknown pass names now, not at the first run
        if check_numerics and passes:
            passes = dict(passes) if isinstance(passes, dict) else {}
            passes["fuse"] = False
        self.device = get_device(device)
        planning.check_budgets_fit(self.device, memory_budget, host_budget)
        if passes and self.device.xp is not np:   # our packed-weight GEMM is CPU code
            passes = dict(passes) if isinstance(passes, dict) else {}
            passes["pack_weights"] = False
        self.passes = passes
        self.variables = VariableStore(self.graph, self.device, seed)
        if type(compile_loops) is not bool:
            raise TypeError(f"compile_loops must be True or False, got {compile_loops!r}")
        self.options = {"check_numerics": bool(check_numerics), "compile_loops": compile_loops}
        if accelerate not in ("auto", True, False):
            raise ValueError(f"accelerate must be 'auto', True or False, got {accelerate!r}")
        self.accelerate = accelerate
        self.memory_budget = memory_budget
        self.host_budget = host_budget
        self.memory_strategy = planning.check_strategy(memory_strategy)
        self.last_run_report = None
        self._programs: dict = {}
        self._cold_runs: dict = {}   # program key -> runs so far on NumPy kernels ("auto")
        self._lock = threading.Lock()

    # --- context manager (TF1: `with tf.Session() as sess`) ---------------------------------
    def __enter__(self):
        if not hasattr(_default_sessions, "stack"):
            _default_sessions.stack = []
        _default_sessions.stack.append(self)
        return self

    def __exit__(self, *exc):
        _default_sessions.stack.pop()
        return False

    @contextlib.contextmanager
    def as_default(self):
        """Make this the default session inside the block (tf.Session.as_default): `value.eval()`
        and `node.run()` use it there. Unlike `with sess:`, the block does not end with the
        session: it stays open (TF1's as_default does not close it either)."""
        if not hasattr(_default_sessions, "stack"):
            _default_sessions.stack = []
        stack = _default_sessions.stack
        stack.append(self)
        try:
            yield self
        finally:
            for k in range(len(stack) - 1, -1, -1):
                if stack[k] is self:
                    del stack[k]
                    break

    def close(self):
        """Free the compiled programs; later runs raise RuntimeError (as TF1's do)."""
        self._closed = True
        self._programs.clear()
        self._cold_runs.clear()

    # --- compile ------------------------------------------------------------------------------
    def compile(self, fetches: list[Value], fed: list[Value], tracked: bool = False,
                passes=None) -> Program:
        """The Program for these fetches and fed values: cloned, optimised, scheduled once.
        `tracked`: count device bytes while running; `passes`: override the session's passes."""
        passes = self.passes if passes is None else passes
        key = (tuple(id(v) for v in fetches), tuple(id(v) for v in fed), bool(tracked),
               repr(sorted(passes.items())) if isinstance(passes, dict) else passes)
        with self._lock:
            entry = self._programs.get(key)
            if entry is None or entry[0] != self.graph.version:
                # tiered: NumPy kernels first, compiled ones once the program is hot
                cold = self._tiered()
                with gc_paused():
                    entry = self._compile_uncached(fetches, fed, tracked, passes, not cold)
                self._programs[key] = entry
                self._cold_runs.pop(key, None)
                if cold:
                    self._cold_runs[key] = 0
            elif key in self._cold_runs:   # a program still on NumPy kernels: count its runs
                self._cold_runs[key] += 1
                if self._cold_runs[key] >= HOT_AFTER:
                    _log.info("rnngraph: compiling a program run %d times with the accelerated "
                              "CPU backend (numba; the first time on this machine can take "
                              "seconds, later processes read its cache)", self._cold_runs[key])
                    with gc_paused():
                        entry = self._compile_uncached(fetches, fed, tracked, passes, True)
                    self._programs[key] = entry
                    del self._cold_runs[key]
        return entry[1]

    def programs(self) -> list:
        """The programs compiled so far, oldest first, for inspection: each has the optimised
        graph the passes made (`print(prog.graph)`), its schedule (`print(prog)`) and its
        inputs and outputs. A program that moved to the accelerated backend is listed once,
        as it now runs."""
        with self._lock:
            return [entry[1] for entry in self._programs.values()]

    def _tiered(self) -> bool:
        """Start new programs on NumPy kernels? Yes with accelerate="auto" where an
        accelerated CPU backend could run (its kernels take seconds to compile the first time)."""
        if self.accelerate != "auto" or self.device.xp is not np or HOT_AFTER <= 0:
            return False
        accel = feature("accelerator")
        return accel is not None and accel.available()

    def _compile_uncached(self, fetches, fed, tracked, passes, accelerate=True):
        options = dict(self.options, accelerate=bool(accelerate and self.accelerate is not False))
        ctx = CompileContext(self.device, self.variables, options, tracked=tracked)
        graph, vmap = clone(self.graph, list(fetches) + list(fed))
        placement.report(self, vmap)   # rg.device placements this session cannot honour
        notes: list = []
        kept, self.pass_stats = optimize(graph, [vmap[v] for v in list(fetches) + list(fed)],
                                         passes, notes, source=self.graph, fed=len(fed))
        try:
            prog = Program(graph, kept[:len(fetches)], kept[len(fetches):], ctx)
        except ValueError:   # a placeholder not fed? name the user's fetches that need it
            missing = unfed_placeholder(kept[:len(fetches)], kept[len(fetches):])
            if missing is None:
                raise
            raise ValueError(_missing_feed_message(missing[0], [fetches[i] for i in missing[1]])
                             ) from None
        prog.source_map = vmap  # user Value -> compiled Value (memory plans use it)
        prog.pass_notes = notes  # why stream_outputs left output stacks whole (plans say it)
        return (self.graph.version, prog)

    # --- run ----------------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None, report: bool = False, **run_options):
        """Compute `fetches` (a Value or nested list/tuple/dict/namedtuple of Values; a tensor
        name such as "MatMul:0" fetches that tensor, an operation name such as "train" runs
        that node and gives None, as in TF1; so do a grouped update (minimize's train op,
        rg.group, rg.no_op) and global_variables_initializer()).

        `report=True` measures the run (peak device bytes, bytes moved to and from the host)
        into `self.last_run_report`; sessions on a capacity-limited device, and sessions with
        a memory budget on a device other than the CPU, always do. A run that measures nothing
        sets it to None, so it never holds an earlier run's report.

        A run updates variables all at once: its assigns (and init_variables) take effect
        when it returns, and if it raises, KeyboardInterrupt included, every variable keeps
        its value from before the run. Ctrl-C during a run raises KeyboardInterrupt, never
        an ExecutionError.

        `feed_dict` is a dict {tensor or name: value}: a placeholder, or any other tensor of
        the graph (the fed value replaces what it would compute), or a nested tuple of them
        (an LSTMStateTuple, MultiRNNCell's tuple of states) with a value of the same structure
        (the state a previous run returned, say): each tensor gets its part. Feeding a
        variable makes every read of it in that run see the fed value (its stored value is
        untouched); a run that feeds a variable and also assigns it (a train op minimising a
        loss of it) raises ValueError, as TF1 does, since the update would start from the fed
        value. Integer feeds that do
        not fit the placeholder's dtype are an error, never wrapped. After `close()` a run
        raises RuntimeError."""
        self._check_open()
        flat, rebuild = self._check_fetches(fetches)
        fed, arrays = self._check_feeds(feed_dict or {})
        if any(v.node.op.name == "variable" for v in fed):
            _refuse_fed_assigned_variables(flat, fed)
        try:
            prog, plan = stream_guard.prepare(   # (the lengths' values count: their steps)
                self, flat, fed, planning.fed_shapes([a.shape for a in arrays], arrays), report,
                enforce=True)
        except OutOfMemoryError:   # (a plan for fed shapes the run's checks refuse: say that)
            _check_planned_lengths(flat, fed, [a.shape for a in arrays], dict(zip(fed, arrays)))
            raise
        self.last_run_report = None   # (a run that measures nothing leaves no older report)
        pending = self.variables.begin()   # the run's variable writes: all of them, or none
        try:
            outs = planning.execute(self, prog, plan, arrays)
        except BaseException as exc:
            self.variables.end(pending, commit=False)
            interrupt = take_interrupt(exc)   # Ctrl-C is a KeyboardInterrupt, however it arrived
            try:
                if interrupt is None or interrupt is exc:
                    raise
                raise interrupt
            finally:   # (a local naming the exception is a cycle through its traceback: it
                interrupt = None   # would keep the run's buffers until the garbage collector)
        self.variables.end(pending, commit=True)
        # a grouped update (minimize's train op, rg.group, rg.no_op) and the variables'
        # initializer are operations in TF1: running them gives None
        return rebuild([None if v.node.op.name in _OPERATIONS else out
                        for v, out in zip(flat, outs)])

    def memory_plan(self, fetches, feed_dict=None):
        """The memory plan a run of `fetches` would follow, before running it: a MemoryPlan
        whose str() is a table of every saved per-step tensor, its bytes and placement, and the
        predicted peak. `feed_dict` maps placeholders to arrays, or to their shapes given as
        tuples of ints: give every value the run will feed (a fed variable included), since
        a fed value is held for the whole run where a variable read from the session is
        not. The plan is made for the shapes; with `sequence_length` given as an array (or a
        list), its peak is predicted for the steps the run makes (the longest length), as a
        run's is; given only its shape, it counts every step up to the time dimension, an
        upper bound where all lengths are shorter."""
        self._check_open()
        flat, _ = self._check_fetches(fetches)
        fed, shapes, arrays, shapes_of = [], [], {}, {}
        if feed_dict is not None:
            check_feed_dict(feed_dict, "value or shape")
        for key, value in flat_feed_items(feed_dict or {}):
            v = self._feed_key(key)
            if v in shapes_of:
                raise ValueError(f"memory_plan: feed_dict gives {v.name} twice: give it once")
            fed.append(v)
            shapes.append(_planned_shape(v, value))
            shapes_of[v] = shapes[-1]
            if isinstance(value, np.ndarray):
                arrays[v] = value
            elif isinstance(value, list) and (v.type.rank is None or v.type.rank < 2):
                arrays[v] = _coerce_feed(v, value)   # (a value, not a shape: _planned_shape;
                # checked as a run checks it: floats fed as int lengths are a TypeError)
        _check_planned_lengths(flat, fed, shapes, arrays)   # (as the run's kernels would)
        shapes = planning.fed_shapes(shapes, [arrays.get(v) for v in fed])
        return stream_guard.prepare(self, flat, fed, shapes, always_plan=True)[1]

    def _check_open(self):
        if getattr(self, "_closed", False):
            raise RuntimeError("Attempted to use a closed Session (it was closed with close())")

    def _check_fetches(self, fetches):
        if fetches is None:   # (TF1's error; inside a structure, None is kept as None)
            raise TypeError(f"Fetch argument None has invalid type: give a Value, a name or "
                            f"a structure of them (at {user_location()})")
        run_only = []
        if not isinstance(fetches, Value) and _names_a_fetch(fetches):
            fetches = _resolve_fetch_names(fetches, self.graph, run_only)
        flat, rebuild = flatten(fetches)
        flat += run_only   # (operations fetched by name: run, and rebuilt as None)
        check_fetch_values(flat, self.graph)
        return flat, rebuild

    def _check_feeds(self, feed_dict) -> tuple[list[Value], list]:
        fed, arrays = [], []
        check_feed_dict(feed_dict)
        seen = set()
        for key, value in flat_feed_items(feed_dict):
            v = self._feed_key(key)
            if v in seen:
                raise ValueError(f"feed_dict feeds {v.name} twice (a tensor and its name, or a "
                                 "nested key that holds it again): feed it once")
            seen.add(v)
            fed.append(v)
            arr = _coerce_feed(v, value)
            if self.options["check_numerics"] and arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise NumericsError(f"check_numerics: the value fed to placeholder '{v.node.name}' "
                                    f"(built at {v.node.location}) has {int(np.isnan(arr).sum())} "
                                    f"NaN and {int(np.isinf(arr).sum())} Inf entries")
            arrays.append(arr)   # (host arrays: planning.execute puts them on the device)
        return fed, arrays

    def _feed_key(self, key) -> Value:
        return feed_key(self.graph, key)

    # --- variables ----------------------------------------------------------------------------
    def read_variable(self, var) -> np.ndarray:
        name = var if isinstance(var, str) else var.node.name
        return self.device.to_host(self.variables.committed(name))

    def load_variable(self, var, value) -> None:
        name = var if isinstance(var, str) else var.node.name
        self.variables.load(name, value)


def check_fetch_values(flat, root, whose: str = "this session's") -> None:
    """Every fetched Value of `flat` belongs to graph `root` (its root graph), outside loop
    bodies; `whose` names what `root` is in the message (shared with kernel_sources)."""
    for v in flat:
        if v.graph.root is not root:
            raise ValueError(f"cannot fetch {v.name} (built at {v.node.location}): it belongs "
                             f"to another graph than {whose}")
        if v.graph is not root:
            raise ValueError(f"cannot fetch {v.name}: it lives inside a loop body; fetch the "
                             "loop's outputs instead")


def check_feed_dict(feed_dict, what: str = "value") -> None:
    """A feed_dict is a dict {placeholder: `what`}."""
    if not isinstance(feed_dict, dict):
        raise TypeError(f"feed_dict must be a dict {{placeholder: {what}}}, got "
                        f"{type(feed_dict).__name__}")


FEEDABLE = ("feed_dict keys must be tensors of this graph (a placeholder, or any other tensor: "
            "its fed value replaces what it computes), their names ('x:0'), or tuples of them "
            "(an LSTMStateTuple, MultiRNNCell's state) fed values of the same structure")


def feed_key(root, key) -> Value:
    """The tensor of graph `root` that feed_dict key `key` (a Value or its name) feeds."""
    if isinstance(key, str):
        try:
            key = root.get_value(key)
        except (KeyError, ValueError, IndexError):
            raise ValueError(f"feed_dict key {key!r} names no value in this graph") from None
    if not isinstance(key, Value):
        raise TypeError(f"{FEEDABLE}; got {type(key).__name__}: {key!r:.200}")
    if key.graph is not root:
        raise ValueError(f"cannot feed {key.name}: it belongs to another graph")
    return key


def flat_feed_items(feed_dict: dict) -> list:
    """feed_dict's (key, value) pairs, a nested key flattened with its value as TF1 does: a
    tuple of tensors (an LSTMStateTuple, a tuple of them) takes a tuple or list of the same
    structure, each tensor its part. A value of another structure is a ValueError naming the
    key (an array is one value, never split along its first axis)."""
    items = []
    for key, value in feed_dict.items():
        if isinstance(key, tuple):   # (lists are unhashable: nested keys are tuples)
            _flatten_feed(key, value, key, "", items)
        else:
            items.append((key, value))
    return items


def _flatten_feed(key, value, top, path: str, out: list) -> None:
    if not isinstance(key, tuple):
        out.append((key, value))
        return
    if not isinstance(value, (tuple, list)) or len(value) != len(key):
        got = (f"a {type(value).__name__} of {len(value)}" if isinstance(value, (tuple, list))
               else f"an array of shape {value.shape}" if isinstance(value, np.ndarray)
               else f"a {type(value).__name__}")
        raise ValueError(f"feed_dict key {_key_text(top)}{' at ' + path if path else ''} is a "
                         f"{type(key).__name__} of {len(key)} tensors, but its value is {got}: "
                         f"feed a tuple or list of the same structure (what sess.run returned "
                         f"for it, say)")
    for i, (k, v) in enumerate(zip(key, value)):
        _flatten_feed(k, v, top, f"{path}[{i}]", out)


def _key_text(key, limit: int = 300) -> str:
    """A nested feed key for messages: tensors by name, tuples by their type."""
    def text(k):
        if isinstance(k, Value):
            return k.name
        if isinstance(k, tuple):
            fields = getattr(k, "_fields", None)
            parts = [f"{f}={text(x)}" for f, x in zip(fields, k)] if fields else \
                [text(x) for x in k]
            return f"{type(k).__name__}({', '.join(parts)})"
        return repr(k)
    out = text(key)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _names_a_fetch(f) -> bool:
    """Does the fetch structure `f` hold a name (a str)?"""
    if isinstance(f, str):
        return True
    if isinstance(f, dict):
        return any(_names_a_fetch(v) for v in f.values())
    if isinstance(f, (list, tuple)):
        return any(_names_a_fetch(v) for v in f)
    return False


_OPERATIONS = ("group", "init_variables")   # ops whose run gives None, as TF1's Operations


def _resolve_fetch_names(fetches, root, run_only: list):
    """`fetches` with each tensor name ("MatMul:0") replaced by its Value and each operation
    name ("train") by None, its node's first output added to `run_only` (TF1 runs an
    operation fetched by name and returns None for it). ValueError for a name the graph does
    not hold, as TF1's."""
    def walk(f):
        if isinstance(f, str):
            try:
                if ":" in f:
                    return root.get_tensor_by_name(f)
                node = root.get_operation_by_name(f)
            except (KeyError, ValueError) as exc:
                msg = exc.args[0] if exc.args else str(exc)
                raise ValueError(f"Fetch argument {f!r} cannot be interpreted as a Tensor. "
                                 f"({msg})") from None
            run_only.extend(node.outputs[:1])
            return None
        if isinstance(f, Value) or f is None:
            return f
        if isinstance(f, dict):
            return type(f)((k, walk(v)) for k, v in f.items())
        if isinstance(f, tuple) and hasattr(f, "_fields"):
            return type(f)(*(walk(v) for v in f))
        if isinstance(f, (list, tuple)):
            return type(f)(walk(v) for v in f)
        return f   # (flatten accepts or refuses the rest)
    return walk(fetches)


def _missing_feed_message(node, fetches: list) -> str:
    """A run or plan of `fetches` (the user's Values) needs placeholder `node`, not fed."""
    names = [v.name for v in fetches]
    shown = ", ".join(f"'{n}'" for n in names[:4]) + \
        (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"placeholder '{node.name}' ({node.outputs[0].type}, built at {node.location}) must "
            f"be fed a value (in feed_dict) to compute the fetch{'es' if len(names) > 1 else ''} "
            f"{shown}")


def _planned_shape(v: Value, value) -> tuple:
    """memory_plan's feed entry: a shape given as a tuple or list of ints, or an array (its
    shape). A shape with None (an unknown dimension) or a string is refused: plans are made
    for concrete shapes."""
    what = f"placeholder '{v.node.name}'" if v.node.op.name == "placeholder" else f"value '{v.name}'"
    where = f" (built at {v.node.location})"
    if isinstance(value, (str, bytes)):
        raise TypeError(f"memory_plan: give {what}{where} an array or its shape as a tuple or "
                        f"list of ints, got {type(value).__name__} {value!r}")
    flat_seq = isinstance(value, (tuple, list)) and not any(
        isinstance(d, (tuple, list, np.ndarray)) for d in value)
    # (a flat list is a value, as in feed_dict, for a placeholder of rank 0 or 1 (lengths);
    # for a higher rank it cannot be one, so it is read as a shape like a tuple)
    as_shape = isinstance(value, tuple) or (v.type.rank is not None and v.type.rank >= 2)
    is_shape = flat_seq and as_shape and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) for d in value)
    if flat_seq and not is_shape and any(d is None for d in value):
        raise TypeError(f"memory_plan: the shape given for {what}{where} must have every "
                        f"dimension known (ints; a plan is made for concrete shapes), got "
                        f"{tuple(value)!r}")
    if (flat_seq and not is_shape and len(value) == len(v.shape) != 1
            and all(isinstance(d, (int, float, np.integer, np.floating)) for d in value)):
        raise TypeError(f"memory_plan: the shape given for {what}{where} must be a tuple of ints "
                        f"(or a list of ints), got {value!r}")
    if is_shape:
        shape = tuple(int(d) for d in value)
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:   # ragged nested lists, objects NumPy refuses
            raise TypeError(f"memory_plan: the value given for {what}{where} is neither an array "
                            f"nor a shape (a tuple or list of ints): {exc}") from None
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"memory_plan: the value given for {what}{where} is neither an array "
                            f"of numbers nor a shape (a tuple or list of ints), got {value!r}")
        shape = arr.shape
    if any(d < 0 for d in shape):
        raise ValueError(f"memory_plan: the shape given for {what}{where} has a negative "
                         f"dimension: {shape}")
    if not v.type.accepts(shape):
        hint = ("; a tuple of ints is read as a shape: to plan for a value, pass it as a "
                "list or an array") if is_shape and len(v.shape) == 1 else ""
        raise ValueError(f"memory_plan: {what}{where} expects shape {v.type}, got {shape}{hint}")
    return shape


def _ancestors(values, fed) -> set:
    """The nodes computing `values` needs, stopping at the `fed` Values."""
    fed, seen = set(fed), set()
    stack = [v for v in values if v not in fed]
    while stack:
        n = stack.pop().node
        if n not in seen:
            seen.add(n)
            stack.extend(i for i in n.inputs if i not in fed)
    return seen


def _check_planned_lengths(fetches: list, fed: list, shapes: list, arrays: dict) -> None:
    """memory_plan refuses fed shapes a run would refuse at a check_sequence_length node (an
    rnn's sequence_length): as many lengths as batch rows (and, where the lengths are given as
    an array, each in [0, max_time]), with the InvalidArgumentError the run raises."""
    checks = [n for n in _ancestors(fetches, fed) if n.op.name == "check_sequence_length"]
    if not checks:
        return
    inputs = [v for n in checks for v in n.inputs]
    graph = checks[0].graph
    near = _ancestors(inputs, fed)
    info = infer_shapes(graph, [n for n in graph.nodes if n in near], dict(zip(fed, shapes)))
    for n in sorted(checks, key=lambda n: graph.nodes.index(n)):
        lengths, max_time, batch = n.inputs
        rows = info.type(lengths).shape[0]
        b = info.values.get(batch)
        where = f"sequence_length checked by {n.describe()}"
        if rows is not None and b is not None and rows != int(b):
            raise InvalidArgumentError(f"sequence_length has {rows} entries but the inputs have "
                                       f"batch size {int(b)} ({where})")
        t = info.values.get(max_time)
        given = arrays.get(lengths)
        if given is not None and t is not None and given.size:
            bad = np.nonzero((given < 0) | (given > int(t)))[0]
            if bad.size:
                i = int(bad[0])
                raise InvalidArgumentError(f"sequence_length[{i}] = {int(given[i])} is outside "
                                           f"[0, max_time = {int(t)}] ({where})")


def _coerce_feed(v: Value, value) -> np.ndarray:
    """Check a fed array against the placeholder's static type; cast only where it is safe."""
    what = f"placeholder '{v.node.name}'" if v.node.op.name == "placeholder" else f"value '{v.name}'"
    where = f" (built at {v.node.location})"
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:   # ragged nested lists, objects NumPy refuses
        raise ValueError(f"{what}{where}: the fed value is not an array: {exc}") from None
    want = v.dtype
    if arr.dtype != want:
        ok = (want.kind == "f" and arr.dtype.kind in "fiub") or \
             (want.kind in "iu" and arr.dtype.kind in "iu") or (want.kind == "b" and arr.dtype.kind == "b")
        if not ok:
            raise TypeError(f"{what}{where} has dtype {want}, cannot feed an array of dtype "
                            f"{arr.dtype}")
        if want.kind in "iu" and arr.size and not np.can_cast(arr.dtype, want):
            info = np.iinfo(want)   # an integer that does not fit is an error, never wrapped
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                bad = int(hi if hi > info.max else lo)
                raise ValueError(f"{what}{where} has dtype {want}, cannot feed {bad}: it is "
                                 f"outside [{info.min}, {info.max}]")
        arr = arr.astype(want)
    if not v.type.accepts(arr.shape):
        hint = ("; a placeholder made without shape= is a scalar (rnngraph needs every rank "
                "when the graph is built): give it shape=, e.g. [None] * rank"
                if not v.shape and v.node.op.name == "placeholder" else "")
        raise ValueError(f"{what}{where} expects shape {v.type} (rank {len(v.shape)}), got an "
                         f"array of shape {arr.shape}{hint}")
    return arr


def _refuse_fed_assigned_variables(fetches: list, fed: list) -> None:
    """A run that feeds a variable may read it (every read sees the fed value), but not also
    assign it: TF1 refuses this too (its optimizers' update ops need the variable itself, not a
    fed tensor). Without the check, an optimizer step would write `fed - lr * grad(fed)`."""
    fed_vars = {v.node.name: v for v in fed if v.node.op.name == "variable"}
    seen, stack = set(), [v.node for v in fetches]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op.name == "assign" and node.inputs[0].node.name in fed_vars:
            var = fed_vars[node.inputs[0].node.name]
            raise ValueError(
                f"cannot feed variable '{var.node.name}' in a run that also assigns it "
                f"({node.describe()}): the fetches would update it from the fed value. Feed "
                f"it only in runs that read it, or set it first with sess.load_variable "
                f"(TF1 refuses this too)")
        stack.extend(v.node for v in node.inputs)


# for Value.eval / Value.run, and Value.assign / assign_add / assign_sub (TF1's Variable methods)
install_operators(default_session=get_default_session, assign=assign)


class InteractiveSession(Session):
    """A Session that makes itself the default session when created (tf.InteractiveSession), so
    `value.eval()` and `op.run()` work without a `with` block; close() stops that."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__enter__()

    def close(self):
        stack = getattr(_default_sessions, "stack", [])
        for k in range(len(stack) - 1, -1, -1):
            if stack[k] is self:
                del stack[k]
                break
        super().close()
