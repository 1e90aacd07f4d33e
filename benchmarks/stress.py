"""Stress test: many processes train at once, with Ctrl-C and fork; counts what goes wrong.

    python benchmarks/stress.py               # 4 processes x 25 training runs (1-2 minutes)
    python benchmarks/stress.py --quick       # 4 x 2 runs of 3 epochs: a short look
    python benchmarks/stress.py --config cpu_helper_thread=True   # with the opt-in helper thread

The driver starts `--procs` worker processes at once (this script in `--worker` mode, with
the rnngraph of the checkout it lives in), each doing its share of `--total` training runs
(or `--runs` each). A training run builds a Session on a 3-layer LSTM (MultiRNNCell of
LSTMCell, dynamic_rnn, dense layer, Adam) and trains it for `--epochs` epochs of two batches
(the second smaller) of seeded random data; after each epoch one program evaluates accuracy and
logits on the epoch's last training batch and then on a `--eval-batch`-row batch (360: another
batch size than training, as in the crash reported in issue 24): each program runs often
enough to move to the accelerated backend, with the batch size changing from run to run. Then
the worker does the same run again as the reference: in the same configuration (a check of
determinism), or with the `--reference-option` Session options given; on an older checkout
whose Session has compile_loops (loops compiled whole, documented to give the bits of the
Python loop driver), with compile_loops=False. The two must agree to the bit: every step's
loss, every evaluation's accuracy and logits, and every variable afterwards (Adam's slots
too); both sessions run in one process with the same BLAS and thread count. (`--tolerance` relaxes this, for a reference
that is not meant to be bit-identical.) `--session KEY=VALUE` adds an option to both Sessions,
and `--config NAME=VALUE` sets rg.config.NAME in the workers (say cpu_helper_thread=True).

Some runs (`--interrupt-rate`, chosen from `--seed`) are interrupted: from a random training
step on (after the loops have run enough to be compiled) the worker tells the driver, which
sends it SIGINT after a random delay of up to `--max-delay` seconds. The worker must see a
KeyboardInterrupt, and its variables afterwards must equal the reference's either before or
after the step it was in. Some runs (`--fork-rate`) call os.fork() after training: the child
runs one more forward pass on the evaluation batch, compares it with the parent's and exits;
the parent waits up to `--timeout` seconds.

Counted, per run:
  crash           a worker (or a forked child) killed by a signal, e.g. SIGSEGV, or exiting
                  with an error that is not our planned interrupt (the run it was in);
  hang            a worker silent for `--timeout` seconds, or a forked child not done by then:
                  killed;
  wrong           a result that differs from the reference (or the child's from the parent's);
  bad interrupt   the planned SIGINT did not arrive as KeyboardInterrupt (say, as an
                  ExecutionError wrapping SystemError), or left the variables neither before
                  nor after the step, or killed the worker.
A worker that crashes or hangs is replaced by a new one for the rest of its runs. The exit
status is 1 if any count is not 0.

Workers get `-X faulthandler`: a crash's Python stack is shown (from the worker's stderr).
Numba compiles on the first run in a fresh kernel cache; a warm-up run (one worker, before the
clock starts, not counted) fills it unless `--no-warmup`; `--cold-cache` gives the workers an
empty cache of their own instead, so they compile, and write the cache, at the same time.

By default the workers run with glibc's MALLOC_MMAP_THRESHOLD_=65536 (`--malloc strict`): every
freed block of 64 KiB or more goes back to the system at once, so code that reads a large array
after it was freed faults every time. With the system's settings (`--malloc system`) the same
read finds the old data and passes, or faults only where malloc happened to give the memory
back: the segfault of issue 24 was such a read (a compiled loop reading a product after numba
had freed it), seen in some runs of some configurations only. `--env KEY=VALUE` passes other
settings to the workers (say RNNGRAPH_QUIET_BLAS=1).

Each worker's BLAS runs one thread by default (`--blas-threads 1`): with OpenBLAS's default of
one thread per core, four processes on two cores spend most of their time in OpenBLAS threads
waiting for each other, and the runs take several times as long. `--blas-threads default`
tests that configuration too.
"""
from __future__ import annotations

import argparse
import ast
import faulthandler
import inspect
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)   # (the rnngraph of this checkout, in the driver and in the workers)
import rnngraph as rg  # noqa: E402
PREFIX = "@@stress "   # a worker's messages to the driver on its stdout, one JSON per line
CHILD_OK, CHILD_WRONG, CHILD_ERROR = 0, 3, 4


# --- the worker ---------------------------------------------------------------------------------
class Model:
    """The graph a worker trains, built once per worker (each run makes new Sessions)."""

    def __init__(self, a):
        self.graph = rg.Graph()
        with self.graph.as_default():
            self.X = rg.placeholder(rg.float32, [None, a.steps, a.inputs], name="X")
            self.y = rg.placeholder(rg.int32, [None], name="y")
            cell = rg.nn.MultiRNNCell([rg.nn.LSTMCell(num_units=a.hidden)
                                       for _ in range(a.layers)])
            _, states = rg.nn.dynamic_rnn(cell, self.X, dtype=rg.float32)
            self.logits = rg.layers.dense(states[-1].h, 10, name="dense")
            xent = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=self.y,
                                                                   logits=self.logits)
            self.loss = rg.reduce_mean(xent, name="loss")
            self.train_op = rg.train.AdamOptimizer(learning_rate=a.learning_rate) \
                .minimize(self.loss)
            correct = rg.nn.in_top_k(self.logits, self.y, 1)
            self.accuracy = rg.reduce_mean(rg.cast(correct, rg.float32), name="accuracy")
            self.init = rg.global_variables_initializer()
            self.variables = rg.global_variables(self.graph)


def apply_config(a) -> None:
    """`--config NAME=VALUE` items, as rg.config.NAME = VALUE (a Python literal)."""
    for name, value in _literals(a.config).items():
        setattr(rg.config, name, value)


def _literals(items) -> dict:
    """KEY=VALUE items as {KEY: VALUE}, VALUE a Python literal (else the string itself)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def has_compile_loops() -> bool:
    """Does this rnngraph's Session take compile_loops (loops compiled whole)?"""
    return "compile_loops" in inspect.signature(rg.Session.__init__).parameters


def reference_options(a) -> dict:
    """The reference's Session options beyond the shared ones: `--reference-option` items,
    else compile_loops=False where the Session has that switch, else none (the reference is
    then the tested configuration again: a check of determinism)."""
    if a.reference_option:
        return _literals(a.reference_option)
    return {"compile_loops": False} if has_compile_loops() else {}


def session_options(a, reference: bool) -> dict:
    opts = _literals(a.session)   # (both Sessions)
    if a.no_pass:
        opts["passes"] = {name: False for name in a.no_pass}
    if reference:
        opts.update(reference_options(a))
    elif a.compile_loops != "default":
        opts["compile_loops"] = a.compile_loops == "on"
    return opts


class RunData:
    """One run's seeded data and plan (the same in the tested and the reference session)."""

    def __init__(self, a, run: int):
        rng = np.random.default_rng([a.seed, run])
        self.interrupt = bool(rng.random() < a.interrupt_rate)
        self.fork = bool(rng.random() < a.fork_rate)
        n_train = train_rows(a)
        shape = (n_train, a.steps, a.inputs)
        self.X = rng.standard_normal(shape).astype(np.float32)
        self.y = rng.integers(0, 10, n_train).astype(np.int32)
        self.X_eval = rng.standard_normal((a.eval_batch, a.steps, a.inputs)).astype(np.float32)
        self.y_eval = rng.integers(0, 10, a.eval_batch).astype(np.int32)
        self.epochs = []   # per epoch, the batches' row indices
        for _ in range(a.epochs):
            order = rng.permutation(n_train)
            self.epochs.append([order[i:i + a.batch] for i in range(0, n_train, a.batch)])
        self.n_steps = sum(len(e) for e in self.epochs)
        first = min(3, self.n_steps - 1)   # (from step 4 on: loops compiled, or soon)
        self.arm_at = int(rng.integers(first, self.n_steps)) if self.interrupt else None
        self.session_seed = int(rng.integers(0, 2 ** 31))


def train_rows(a) -> int:
    return a.batch + max(a.batch // 3, 1)   # two batches a epoch, the second smaller


def send(kind: str, **fields) -> None:
    fields["kind"] = kind
    sys.stdout.write(PREFIX + json.dumps(fields) + "\n")
    sys.stdout.flush()


def train(model, a, data: RunData, opts: dict, arm: bool = False, states_at=()) -> dict:
    """Train one run; returns its record: losses, evaluations, final variables (as bytes),
    the variables after each number of steps in `states_at`, and, with `arm`, what the
    interrupt did."""
    m = model
    rec = {"losses": [], "evals": [], "states": {}, "interrupt": None}
    sess = rg.Session(m.graph, seed=data.session_seed, **opts)

    def variables():
        return [sess.read_variable(v).tobytes() for v in m.variables]

    done = 0    # training steps completed
    begun = 0   # training steps done before the last one that began: a SIGINT leaves the
    #             variables as after `begun` steps or after `begun + 1`
    try:
        try:
            sess.run(m.init)
            if 0 in states_at:
                rec["states"][0] = variables()
            for batches in data.epochs:
                for idx in batches:
                    if arm and done == data.arm_at:
                        send("arm")
                    feed = {m.X: data.X[idx], m.y: data.y[idx]}
                    begun = done
                    loss, _ = sess.run([m.loss, m.train_op], feed_dict=feed)
                    done += 1
                    rec["losses"].append(np.float32(loss).tobytes())
                    if done in states_at:
                        rec["states"][done] = variables()
                # one program, run on two batch sizes in turn (as users evaluate)
                last = batches[-1]
                for X, y in ((data.X[last], data.y[last]), (data.X_eval, data.y_eval)):
                    acc, logits = sess.run([m.accuracy, m.logits], feed_dict={m.X: X, m.y: y})
                    rec["evals"].append((np.float32(acc).tobytes(), logits.tobytes()))
            if arm:   # trained before the signal came: wait for it
                send("waiting")
                time.sleep(a.grace)
                rec["interrupt"] = {"outcome": "lost", "detail": "no SIGINT arrived"}
        except KeyboardInterrupt:
            if not arm:
                raise
            rec["interrupt"] = {"outcome": "KeyboardInterrupt", "begun": begun}
        except BaseException as exc:   # noqa: BLE001 - what the interrupt became, if it is one
            if not arm or isinstance(exc, SystemExit):
                raise
            cause = exc.__cause__ or exc.__context__
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if cause is not None:
                detail += f" (from {type(cause).__name__})"
            rec["interrupt"] = {"outcome": "other", "begun": begun, "detail": detail[:300]}
        if rec["interrupt"] is not None:
            rec["after_interrupt"] = variables()
            return rec
        rec["final"] = variables()
        if data.fork:
            rec["fork"] = fork_check(sess, m, data, a)
        return rec
    finally:
        sess.close()


def fork_check(sess, m, data: RunData, a) -> dict:
    """Fork; the child runs the evaluation's forward pass again and compares it with ours."""
    feed = {m.X: data.X_eval, m.y: data.y_eval}
    fetch = [m.accuracy, m.logits]   # (the evaluation's program, hot by now)
    want = sess.run(fetch, feed_dict=feed)[1].tobytes()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:   # the child: never returns into the worker's code
        code = CHILD_ERROR
        try:
            got = sess.run(fetch, feed_dict=feed)[1].tobytes()
            code = CHILD_OK if got == want else CHILD_WRONG
        except BaseException:   # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.monotonic() + a.timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"outcome": "hang"}
        time.sleep(0.02)
    if os.WIFSIGNALED(status):
        return {"outcome": "crash", "detail": f"child killed by {_signame(os.WTERMSIG(status))}"}
    code = os.WEXITSTATUS(status)
    if code == CHILD_OK:
        return {"outcome": "ok"}
    if code == CHILD_WRONG:
        return {"outcome": "wrong", "detail": "the child's forward pass differs from the parent's"}
    return {"outcome": "crash", "detail": f"child exited with status {code}"}


def compare(test: dict, ref: dict, tolerance: float) -> list:
    """Where the tested run's record differs from the reference's (same steps only)."""
    def same(x: bytes, y: bytes) -> bool:
        if x == y:
            return True
        if tolerance <= 0 or len(x) != len(y):
            return False
        u, v = np.frombuffer(x, np.float32), np.frombuffer(y, np.float32)
        return bool(np.allclose(u, v, rtol=tolerance, atol=tolerance, equal_nan=True))

    diffs = []
    for i, (x, y) in enumerate(zip(test["losses"], ref["losses"])):
        if not same(x, y):
            diffs.append(f"loss of step {i + 1}: {_f32(x)!r} vs reference {_f32(y)!r}")
            break
    for e, (x, y) in enumerate(zip(test["evals"], ref["evals"])):
        batch = "the evaluation batch" if e % 2 else "the last training batch"
        for name, u, v in zip(("accuracy", "logits"), x, y):
            if not same(u, v):
                diffs.append(f"epoch {e // 2 + 1}: {name} on {batch} differ(s) from the "
                             "reference")
        if len(diffs) > 3:
            break
    if "final" in test and "final" in ref:
        bad = [i for i, (u, v) in enumerate(zip(test["final"], ref["final"])) if not same(u, v)]
        if bad:
            diffs.append(f"{len(bad)} of {len(test['final'])} variables differ after training")
    return diffs


def _f32(b: bytes) -> float:
    return float(np.frombuffer(b, np.float32)[0])


def worker_main(a) -> int:
    faulthandler.enable()
    # Python's own SIGINT handler, whatever the driver was started with (a shell's background
    # job ignores SIGINT, and that is inherited)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    apply_config(a)
    model = Model(a)
    runs = [int(r) for r in a.run_ids.split(",") if r]
    for n, run in enumerate(runs):
        data = RunData(a, run)
        send("start", run=run)
        t0 = time.perf_counter()
        test = train(model, a, data, session_options(a, False), arm=data.interrupt)
        result = {"run": run, "interrupt": test["interrupt"], "fork": test.get("fork"),
                  "wrong": [], "bad_interrupt": None}
        intr = test["interrupt"]
        if intr is not None and intr["outcome"] != "lost":
            before = intr["begun"]
            after = min(before + 1, data.n_steps)
            ref = train(model, a, data, session_options(a, True), states_at={before, after})
            result["wrong"] = compare(test, ref, a.tolerance)
            got = test["after_interrupt"]
            old, new = ref["states"][before], ref["states"][after]
            state = "before" if got == old else "after" if got == new else "torn"
            intr["state"] = state
            if intr["outcome"] != "KeyboardInterrupt":
                result["bad_interrupt"] = f"interrupt not KeyboardInterrupt: {intr['detail']}"
            elif state == "torn":
                n_old = sum(g == o for g, o in zip(got, old))
                n_new = sum(g == n for g, n in zip(got, new))
                result["bad_interrupt"] = (
                    f"variables after the interrupt in step {before + 1} are neither all as "
                    f"before it nor all as after it ({len(got)} variables: {n_old} as before, "
                    f"{n_new} as after)")
        else:
            ref = train(model, a, data, session_options(a, True))
            result["wrong"] = compare(test, ref, a.tolerance)
            if intr is not None:
                result["bad_interrupt"] = "no SIGINT arrived (driver)"
        result["seconds"] = round(time.perf_counter() - t0, 2)
        if n == 0:
            result["blas"] = blas_summary()
        send("result", **result)
    return 0


def blas_summary() -> str:
    try:   # (optional: the `dev` extra has it)
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for info in threadpool_info():
        parts.append(f"{info.get('internal_api')} {info.get('version')} "
                     f"({info.get('user_api')}, {info.get('architecture') or '?'} kernels, "
                     f"{info.get('threading_layer') or '?'} threads, "
                     f"num_threads={info.get('num_threads')}, "
                     f"{os.path.basename(info.get('filepath') or '?')})")
    return "; ".join(parts) or "none loaded"


# --- the driver ---------------------------------------------------------------------------------
def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class Worker:
    """A worker process, its runs left, and what the driver knows of it."""

    def __init__(self, slot, runs, a, env, events):
        self.slot, self.runs = slot, list(runs)
        self.current = None        # the run it is in
        self.armed = False         # our SIGINT is on its way (or was sent) for `current`
        self.killed = False        # by us, as hung
        self.last_heard = time.monotonic()
        self.stderr = tempfile.TemporaryFile()
        cmd = [sys.executable, "-X", "faulthandler", os.path.abspath(__file__), "--worker",
               "--run-ids", ",".join(map(str, runs))] + worker_args(a)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
                                     start_new_session=True, text=True)
        self.pid = self.proc.pid
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events):
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                events.put((self, json.loads(line[len(PREFIX):])))
        events.put((self, {"kind": "eof"}))

    def stderr_tail(self, frames: int = 4) -> str:
        """What the worker's stderr says of its end: faulthandler's fatal error and the
        innermost frames of the thread that crashed, else the last lines."""
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").splitlines()
        fatal = [i for i, t in enumerate(text) if t.startswith("Fatal Python error")]
        if fatal:
            at = fatal[-1]
            cur = next((i for i in range(at, len(text)) if text[i].startswith("Current thread")),
                       None)
            out = [text[at]]
            if cur is not None:
                stack = []
                for t in text[cur + 1:]:
                    if not t.strip().startswith("File "):
                        break
                    stack.append(t.strip())
                out += stack[:frames]
                mine = next((t for t in stack[frames:] if os.path.basename(__file__) in t), None)
                if mine:   # (the line of this script that called into the library)
                    out += ["...", mine]
            return "\n".join(out)
        keep = [t for t in text if t.strip() and not t.startswith("Extension modules")]
        return "\n".join(keep[-8:])

    def kill(self):
        self.killed = True
        try:
            os.killpg(self.pid, signal.SIGKILL)   # (its forked child too)
        except ProcessLookupError:
            pass
        self.proc.wait()


def worker_args(a) -> list:
    out = []
    for name in ("steps", "inputs", "hidden", "layers", "batch", "eval_batch", "epochs",
                 "learning_rate", "seed", "interrupt_rate", "fork_rate", "timeout", "grace",
                 "tolerance", "compile_loops"):
        out += [f"--{name.replace('_', '-')}", str(getattr(a, name))]
    for name in a.no_pass:
        out += ["--no-pass", name]
    for flag in ("config", "session", "reference_option"):
        for item in getattr(a, flag):
            out += [f"--{flag.replace('_', '-')}", item]
    return out


class Tally:
    CATEGORIES = ("crash", "hang", "wrong", "bad interrupt")

    def __init__(self):
        self.failures = []   # (category, run, detail)
        self.results = {}    # run -> result
        self.seconds = []

    def add(self, category, run, detail):
        self.failures.append((category, run, detail))
        first = detail.splitlines()[0] if detail else ""
        print(f"  ! run {run}: {category}: {first}", flush=True)

    def count(self, category) -> int:
        return len({run for c, run, _ in self.failures if c == category})


def drive(a, env, runs_per_slot, tally, label="") -> float:
    events: queue.Queue = queue.Queue()
    alive = {Worker(s, runs, a, env, events) for s, runs in enumerate(runs_per_slot) if runs}
    pending = []   # (time, worker, run): SIGINTs to send
    rnd = random.Random(a.seed)
    total = sum(len(r) for r in runs_per_slot)
    t0 = time.monotonic()
    reported = 0
    try:
        while alive:
            try:
                w, msg = events.get(timeout=0.01 if pending else 0.2)
            except queue.Empty:
                w, msg = None, None
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, pw, run = item
                if pw in alive and pw.current == run:
                    try:
                        os.kill(pw.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
            if msg is not None:
                w.last_heard = now
                kind = msg["kind"]
                if kind == "start":
                    w.current, w.armed = msg["run"], False
                elif kind == "arm":
                    w.armed = True
                    pending.append((now + rnd.uniform(0, a.max_delay), w, w.current))
                elif kind == "result":
                    record_result(msg, tally)
                    w.runs.remove(msg["run"])
                    w.current, w.armed = None, False
                elif kind == "eof":
                    code = w.proc.wait()
                    alive.discard(w)
                    if code != 0 or w.runs:
                        replacement = worker_died(w, code, tally, a)
                        if replacement:
                            alive.add(Worker(w.slot, replacement, a, env, events))
            for w in list(alive):
                if not w.killed and now - w.last_heard > a.timeout:
                    w.kill()
                    run = w.current if w.current is not None else (w.runs[0] if w.runs else None)
                    tally.add("hang", run, f"worker silent for {a.timeout:.0f} s: killed"
                              + (" (after our SIGINT)" if w.armed else ""))
                    if run is not None:
                        tally.results.setdefault(run, {"run": run})
                        w.runs.remove(run)
                    # (its reader thread sees EOF next and, with runs left, starts a replacement)
            finished = len(tally.results)
            if finished != reported and (finished % 10 == 0 or finished == total):
                reported = finished
                print(f"  {label}{finished}/{total} runs, {time.monotonic() - t0:.0f} s",
                      flush=True)
    finally:   # (Ctrl-C in the driver, say: the workers, in sessions of their own, go too)
        for w in list(alive):
            w.kill()
    return time.monotonic() - t0


def worker_died(w, code, tally, a) -> list:
    """A worker ended early or badly: count it against the run it was in; the runs after it
    go to a replacement."""
    if w.killed:
        return w.runs   # (our kill of a hung worker: counted already)
    run = w.current if w.current is not None else (w.runs[0] if w.runs else None)
    if run is None:
        if code != 0:
            tally.add("crash", None, f"worker exited with status {code} after its runs")
        return []
    how = f"killed by {_signame(-code)}" if code < 0 else f"exited with status {code}"
    tail = w.stderr_tail()
    if w.armed and (code == -signal.SIGINT or "KeyboardInterrupt" in tail):
        tally.add("bad interrupt", run, f"the worker died of our SIGINT ({how})\n{tail}")
    else:
        tally.add("crash", run, f"worker {how}" + (" (after our SIGINT)" if w.armed else "")
                  + f"\n{tail}")
    tally.results.setdefault(run, {"run": run})
    w.runs = [r for r in w.runs if r != run]
    return w.runs


def record_result(msg, tally):
    run = msg["run"]
    tally.results[run] = msg
    tally.seconds.append(msg.get("seconds", 0.0))
    if msg.get("blas") and not getattr(tally, "worker_blas", None):
        tally.worker_blas = msg["blas"]
    for d in msg.get("wrong") or []:
        tally.add("wrong", run, d)
    if msg.get("bad_interrupt"):
        tally.add("bad interrupt", run, msg["bad_interrupt"])
    fork = msg.get("fork")
    if fork and fork["outcome"] != "ok":
        category = {"hang": "hang", "wrong": "wrong"}.get(fork["outcome"], "crash")
        tally.add(category, run, "forked child: " + fork.get("detail", fork["outcome"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", type=int, default=4, help="worker processes at once (4)")
    p.add_argument("--total", type=int, default=None, help="training runs in all (100)")
    p.add_argument("--runs", type=int, default=None, help="training runs per process "
                   "(default: total / procs)")
    p.add_argument("--quick", action="store_true", help="8 runs of 3 epochs")
    p.add_argument("--compile-loops", choices=("default", "on", "off"), default="default",
                   help="the tested Session's compile_loops (default: the library's default), "
                        "where the Session has that switch")
    p.add_argument("--session", action="append", default=[], metavar="KEY=VALUE",
                   help="a Session option for both Sessions (repeatable; VALUE a Python "
                        "literal), e.g. accelerate=False")
    p.add_argument("--reference-option", action="append", default=[], metavar="KEY=VALUE",
                   help="the reference Session's options instead of compile_loops=False "
                        "(repeatable)")
    p.add_argument("--no-pass", action="append", default=[], metavar="NAME",
                   help="turn a compiler pass off in both Sessions (repeatable), "
                        "e.g. pack_weights")
    p.add_argument("--config", action="append", default=[], metavar="NAME=VALUE",
                   help="set rg.config.NAME to the Python literal VALUE in the workers "
                        "(repeatable), e.g. cpu_helper_thread=True")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (4; quick: 3)")
    p.add_argument("--batch", type=int, default=150)
    p.add_argument("--eval-batch", type=int, default=360)
    p.add_argument("--steps", type=int, default=28, help="time steps T")
    p.add_argument("--inputs", type=int, default=28)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=0.003)
    p.add_argument("--interrupt-rate", type=float, default=0.25)
    p.add_argument("--fork-rate", type=float, default=0.25)
    p.add_argument("--max-delay", type=float, default=0.05,
                   help="seconds: the SIGINT comes up to this long after the worker arms")
    p.add_argument("--timeout", type=float, default=180.0,
                   help="seconds a worker may stay silent (and a forked child may run)")
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds an armed worker that finished training waits for the SIGINT")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="0 (default): results must equal the reference's to the bit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blas-threads", default="1", metavar="N|default",
                   help="threads of each worker's BLAS (OPENBLAS_NUM_THREADS, MKL_NUM_THREADS; "
                        "default 1); 'default' leaves them to the library and the environment")
    p.add_argument("--malloc", choices=("strict", "system"), default="strict",
                   help="strict (default): glibc returns each freed block of 64 KiB or more "
                        "to the system at once (MALLOC_MMAP_THRESHOLD_=65536), so that reading "
                        "a large array after it was freed faults every time instead of by "
                        "chance; system: the system's malloc settings")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an environment variable for the workers (repeatable)")
    p.add_argument("--no-warmup", action="store_true",
                   help="no uncounted warm-up run to fill the kernel cache first")
    p.add_argument("--cold-cache", action="store_true",
                   help="the workers share a new, empty kernel cache (implies --no-warmup)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-ids", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.epochs is None:
        a.epochs = 3 if a.quick else 4
    if a.worker:
        return worker_main(a)

    if a.total is not None and a.runs is not None:
        p.error("give --total or --runs, not both")
    total = a.total if a.total is not None else (
        a.runs * a.procs if a.runs is not None else (8 if a.quick else 100))
    if a.procs < 1 or total < 1:
        p.error("--procs and the number of runs must be at least 1")
    per = a.runs if a.runs is not None else -(-total // a.procs)
    slots = [list(range(s * per, min((s + 1) * per, total))) for s in range(a.procs)]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if a.malloc == "strict":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    if a.blas_threads != "default":
        if not a.blas_threads.isdigit() or int(a.blas_threads) < 1:
            p.error("--blas-threads takes a positive number or 'default'")
        env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = a.blas_threads
    for item in a.env:
        key, _, value = item.partition("=")
        env[key] = value
    cache = None
    if a.cold_cache:
        cache = tempfile.mkdtemp(prefix="rnngraph-stress-cache-")
        env["RNNGRAPH_CACHE_DIR"] = os.path.join(cache, "rnngraph")
        env["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba")
        a.timeout = max(a.timeout, 900.0)
    if a.compile_loops != "default" and not has_compile_loops():
        p.error("this rnngraph's Session has no compile_loops option")
    print_header(a, total, per, env)
    try:
        if not (a.no_warmup or a.cold_cache):
            warm = Tally()
            t = drive(argparse.Namespace(**{**vars(a), "interrupt_rate": 0.0,
                                            "fork_rate": 0.0, "timeout": max(a.timeout, 900.0)}),
                      env, [[total]], warm, label="warm-up: ")
            print(f"warm-up run (not counted): {t:.1f} s"
                  + (f", {len(warm.failures)} failure(s) (see above)" if warm.failures else ""))
        tally = Tally()
        seconds = drive(a, env, slots, tally)
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    return report(a, tally, total, seconds)


def print_header(a, total, per, env) -> None:
    try:   # (optional: the accelerated backend's)
        import numba
        numba_version = numba.__version__
    except ImportError:
        numba_version = "not installed"
    print(f"stress: {a.procs} processes at once x {per} runs = {total} training runs; "
          f"{os.cpu_count()} CPUs here")
    print(f"model: {a.layers}-layer LSTM (MultiRNNCell of LSTMCell({a.hidden})), dynamic_rnn, "
          f"T={a.steps}, input {a.inputs}; Adam({a.learning_rate:g}); {a.epochs} epochs of "
          f"{train_rows(a)} rows in batches of {a.batch}; accuracy after "
          f"each epoch on the last training batch and on {a.eval_batch} rows")
    tested = ", ".join(f"{k}={v!r}" for k, v in session_options(a, False).items()) or \
        "the library's defaults"
    ref = reference_options(a)
    ref = "the same with " + ", ".join(f"{k}={v!r}" for k, v in ref.items()) if ref else \
        "the same configuration again (this Session has no compile_loops; a determinism check)"
    print(f"tested Session: {tested}" + (f"; rg.config: {', '.join(a.config)}" if a.config
                                         else ""))
    print(f"reference Session: {ref}; compared "
          + ("to the bit" if a.tolerance <= 0 else f"within {a.tolerance:g}"))
    print(f"per run: SIGINT with probability {a.interrupt_rate:g} (up to {a.max_delay:g} s after "
          f"a random step from step 4 on), fork after training with probability {a.fork_rate:g}; "
          f"timeout {a.timeout:g} s; seed {a.seed}")
    settings = {k: env[k] for k in sorted(env) if k.startswith(("RNNGRAPH_", "NUMBA_", "OPENBLAS_",
                                                               "OMP_", "MKL_", "MALLOC_"))}
    if settings:
        print("environment: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(f"versions: python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"numba {numba_version}, rnngraph {getattr(rg, '__version__', '?')}")
    print(f"BLAS (driver): {blas_summary()}", flush=True)


def _masked(detail: str) -> str:
    """detail with its addresses and step numbers masked, so alike failures group."""
    detail = re.sub(r"0x[0-9a-f]+", "0x...", detail)
    return re.sub(r"(step|epoch) \d+", r"\1 N", detail)


def report(a, tally, total, seconds) -> int:
    results = tally.results
    intr = [r["interrupt"] for r in results.values() if r.get("interrupt")]
    forks = [r["fork"] for r in results.values() if r.get("fork")]
    print()
    if getattr(tally, "worker_blas", None):
        print(f"BLAS (a worker, after a run): {tally.worker_blas}")
    per_run = sorted(tally.seconds)
    if per_run:
        print(f"time: {seconds:.0f} s for {total} runs ({a.procs} at once); a run (tested + "
              f"reference) took {per_run[len(per_run) // 2]:.1f} s median, "
              f"{per_run[-1]:.1f} s at most")
    outcomes = {}
    for i in intr:
        key = i["outcome"] + (f", variables {i['state']}" if "state" in i else "")
        outcomes[key] = outcomes.get(key, 0) + 1
    print(f"interrupts: {len(intr)} planned; " + (", ".join(f"{k}: {v}" for k, v in
                                                          sorted(outcomes.items())) or "none"))
    fork_out = {}
    for f in forks:
        fork_out[f["outcome"]] = fork_out.get(f["outcome"], 0) + 1
    print(f"forks: {len(forks)}; " + (", ".join(f"{k}: {v}" for k, v in sorted(fork_out.items()))
                                      or "none"))
    print()
    print(f"{'category':<16}{'runs':>6}")
    for c in Tally.CATEGORIES:
        print(f"{c:<16}{tally.count(c):>6}")
    if tally.failures:
        print("\nfailures, alike ones together:")
        groups: dict = {}
        for c, run, detail in tally.failures:
            runs = groups.setdefault((c, _masked(detail)), [])
            if run not in runs:
                runs.append(run)
        for (c, detail), runs in groups.items():
            which = ", ".join(str(r) for r in runs[:12]) + (", ..." if len(runs) > 12 else "")
            print(f"- {c} in {len(runs)} run(s) ({which}): " + detail.replace("\n", "\n    "))
    counts = [tally.count(c) for c in Tally.CATEGORIES]
    print(f"\ncrashes {counts[0]}, hangs {counts[1]}, wrong {counts[2]}, "
          f"bad interrupts {counts[3]} ({total} runs)")
    return 1 if any(counts) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:   # (the workers are gone: drive's finally)
        print("stress: interrupted", file=sys.stderr)
        sys.exit(130)
