"""Opt-in streaming never raises the peak: `Session(passes={"stream_outputs": True})` without a
memory budget runs the streamed program only where, at the fed shapes, its predicted peak is
at most the peak of the same program compiled without the pass; else it stands down and the
session runs the unstreamed program (Session.memory_plan's plan notes say so, with both peaks).

Why it cannot always help: streaming removes the [T, B, V] temporaries of a head (its logits,
softmax, one-hot and their gradient) and the [T, B, H] output stack, but the backward loop
then recomputes the head's step from a saved [T, B, H] residual of the outputs, so during the
backward loop it holds that residual and the head's weights where the unstreamed program held
the [T, B, H] gradient of the outputs. Where the unstreamed peak is that backward loop (stacked
cells: MultiRNNCell holds a residual stack per layer), the streamed peak is the head's weights
above it. With sequence_length and a loss that is not zero at the padded steps, the streamed
forward loop also runs every step up to the time dimension, where the unstreamed one stops at
the longest sequence (its stacks are that long).

The choice is made once per fetches, fed values and fed shapes (plans are per shape too), on
the memory model's predictions (memory/simulate.py), and cached."""
from __future__ import annotations

from ..memory.accounting import fmt_bytes
from ..memory.planner import make_plan
from . import planning

STREAM = "stream_outputs"


def opted_in(sess) -> bool:
    """The session asks for opt-in streaming without a memory budget (the case guarded)."""
    passes = sess.passes
    return sess.memory_budget is None and isinstance(passes, dict) and passes.get(STREAM) is True


class _WithPasses:
    """A session seen with other passes (the program compiled without streaming); the session
    itself is not changed, so a run in another thread keeps its own passes."""

    def __init__(self, sess, passes):
        self._sess, self.passes = sess, passes

    def __getattr__(self, name):
        return getattr(self._sess, name)

    def compile(self, fetches, fed, tracked=False, passes=None):
        return self._sess.compile(fetches, fed, tracked, self.passes if passes is None
                                  else passes)


def _predicted(sess, prog, shapes) -> int:
    feed_types = {prog.inputs[i]: tuple(s) for i, s in enumerate(shapes)}
    dev = sess.device
    return make_plan(prog.schedule, feed_types, None, dev.profile, dev.describe()).predicted_peak


def _loops(prog) -> dict:
    return {n.name: n.op for n in prog.graph.nodes if n.op.name == "loop"}


def _skipping_lost(plain, streamed) -> list:
    """Names of the loops that skip finished rows or steps past the longest sequence in the
    `plain` program but not in the `streamed` one (stream_outputs made them run every row:
    what they skip depends on the fed lengths, which the predictions, made for the time
    dimension, do not see)."""
    mine = _loops(streamed)
    return [name for name, op in _loops(plain).items() if name in mine and (
        (op.has_trip and not mine[name].has_trip) or
        (op.active_rows and not mine[name].active_rows))]


def choose(sess, flat, fed, shapes, tracked: bool):
    """(the session to prepare the run with: `sess`, or a view of it without stream_outputs,
    a note saying why streaming stood down or None)."""
    if not opted_in(sess):
        return sess, None
    ids = (tuple(id(v) for v in flat), tuple(id(v) for v in fed), sess.graph.version)
    key = ids + (tuple(tuple(int(d) for d in s) for s in shapes),)
    cache = getattr(sess, "_stream_choices", None)
    if cache is None:
        cache = sess._stream_choices = {}
    if key not in cache:
        plain = dict(sess.passes, **{STREAM: False})
        streamed = sess.compile(flat, fed, tracked=tracked)
        unstreamed = cache.get(("plain",) + ids + (tracked,))
        if unstreamed is None:
            # (the program without the pass, only to predict its peak: not one of the
            # session's programs, and its pass statistics not the session's)
            stats = getattr(sess, "pass_stats", None)
            unstreamed = sess._compile_uncached(flat, fed, tracked, plain, False)[1]
            if stats is not None:
                sess.pass_stats = stats
            cache[("plain",) + ids + (tracked,)] = unstreamed
        lost = _skipping_lost(unstreamed, streamed)
        up, down = (0, 0) if lost else (_predicted(sess, streamed, shapes),
                                        _predicted(sess, unstreamed, shapes))
        if lost:
            cache[key] = (plain, (
                f"stream_outputs stood down: a streamed sum is not zero at the padded steps, so "
                f"{', '.join(lost)} would run every row of every step where the unstreamed loop "
                f"skips finished rows and stops at the longest sequence (its stacks no longer); "
                f"weight the loss by rg.sequence_mask(lengths, maxlen) to stream it, or give "
                f"the Session a memory_budget"))
        elif up > down:
            cache[key] = (plain, (
                f"stream_outputs stood down: at these shapes the streamed program's peak "
                f"({up} bytes, {fmt_bytes(up)}) would be above the unstreamed one's ({down} "
                f"bytes, {fmt_bytes(down)}); opt-in streaming never raises the peak (give the "
                f"Session a memory_budget to let the planner trade time for memory)"))
        else:
            cache[key] = None
    choice = cache[key]
    if choice is None:
        return sess, None
    return _WithPasses(sess, choice[0]), choice[1]


def prepare(sess, flat, fed, shapes, report: bool = False, always_plan: bool = False,
            enforce: bool = False):
    """planning.prepare, with opt-in streaming standing down where it would raise the peak."""
    view, note = choose(sess, flat, fed, shapes, planning.wants_tracking(sess, report))
    prog, plan = planning.prepare(view, flat, fed, shapes, report, always_plan, enforce)
    if note is not None and plan is not None and note not in plan.notes:
        plan.notes.append(note)
    return prog, plan
