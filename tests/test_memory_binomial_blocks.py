"""A chunked backward loop reads a binomial replay's rows in blocks, first row to last.

Its chunk prologue cuts a block of a recomputed residual's rows (runtime/residuals.py's
ChunkSource, SavedStack.read_block) before its steps read their rows in reverse: the replay
(Replayer, binomial schedule) reaches the block's later rows by advancing, which stores
states, so it holds more of them than reverse reads one at a time ever do
(checkpoints.simulate). The peak model follows the run's order (simulate.backward_reads,
simulate.binomial_replay); checked here against the Replayer itself."""
import numpy as np
import pytest

from rnngraph.memory.checkpoints import BinomialEvery, simulate
from rnngraph.memory.simulate import backward_reads, binomial_replay
from rnngraph.runtime.devices import CPUDevice
from rnngraph.runtime.residuals import RecomputedStack, Replayer


class _Step:
    """A body program of one carried state and one residual row: next = state + 1."""

    def __init__(self):
        self.runs = 0

    def run(self, inputs):
        self.runs += 1
        state = inputs[1]
        return [state + 1, state * 2]


def _replayer(n, slots, reverse):
    rep = Replayer(CPUDevice(), _Step(), 1, [], [], BinomialEvery(slots), n, reverse, False,
                   ["r"])
    carried = (np.zeros(3, np.float32),)
    order = range(n - 1, -1, -1) if reverse else range(n)
    for _ in order:   # the forward pass: it offers its state before each step
        rep.add_checkpoint(carried)
        carried = (carried[0] + 1,)
    rep.finish(n)
    return rep


def _positions(n, reverse, reads):
    return tuple((t, n - 1 - u if reverse else u) for t, u in reads)


@pytest.mark.parametrize("n,c,slots", [(60, 16, 16), (60, 4, 16), (37, 8, 5), (20, 7, 3)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("blocks", [1, 2])
def test_the_states_a_replay_holds_follow_the_reads_of_a_chunked_loop(n, c, slots, reverse,
                                                                       blocks):
    rep = _replayer(n, slots, reverse)
    forward = {id(s) for _, s in rep.stack}
    keep = list(rep.stack)   # (their ids stay theirs)
    stack = RecomputedStack(rep, 0, (3,), np.float32)
    reads = backward_reads(n, c, True, blocks, True)   # a backward loop: t from n - 1 down
    got = []
    for t, u in reads:
        row = stack[u]
        np.testing.assert_array_equal(row, np.full(3, 2 * (n - 1 - u if reverse else u)))
        got.append((t, len(rep.stack), sum(id(s) in forward for _, s in rep.stack)))
    del keep
    want = [(t, states, kept) for t, kind, states, kept in
            binomial_replay(n, slots, 0, reverse, _positions(n, reverse, reads))
            if kind == "held"]
    # (a position asked twice in a row is the replay buffer's: no event, the same states)
    it = iter(want)
    last = None
    for (t, states, kept), (_, u) in zip(got, reads):
        i = n - 1 - u if reverse else u
        if i == last:
            continue
        last = i
        assert (t, states, kept) == next(it)
    assert next(it, None) is None


def test_block_reads_hold_more_states_than_reverse_reads():
    """The case of issue 29 (60 steps, chunks of 16, 16 states): cutting the block of steps
    32..47, the replay holds all 16 states, 13 of them its own; reverse reads hold at most
    10 there (the model counted those, 3,456 bytes short at that moment)."""
    n, c, slots = 60, 16, 16
    reads = backward_reads(n, c, True, 1, True)
    events = binomial_replay(n, slots, 0, False, reads)
    at_47 = [(states, kept) for t, kind, states, kept in events if t == 47 and kind == "held"]
    assert at_47[-1] == (16, 3)
    assert max(simulate(n, slots)["most"][32:48]) == 10


def test_backward_reads_cut_a_block_before_the_step_reads_its_row():
    assert backward_reads(5, 2, True, 1, True) == (
        (4, 4), (4, 4), (3, 2), (3, 3), (3, 3), (2, 2), (1, 0), (1, 1), (1, 1), (0, 0))
    assert backward_reads(3, 2, False, 2, False) == ((0, 0), (0, 1), (0, 0), (0, 1),
                                                      (2, 2), (2, 2))
