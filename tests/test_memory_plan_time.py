"""Planning under a budget does its work once, and no more of it than its decisions need:

- a second run with the same fed shapes plans nothing again, a program that moved to the
  accelerated backend once hot included (only that program's own plan is made again, once);
- within a plan, a set of loop choices is simulated once (a move tried again in a later round
  of the search reuses its peak), and the plans made for one program at other budgets (the
  floor confirmed, the chunked and streamed variants) reuse the peaks simulated for it;
- the strides of a schedule's values are worked out once per plan, not once per simulation;
- none of that changes a plan: placements, predicted peaks, min_budget, notes and extra
  time are those the planner gave before (recorded below), and a plan made with the shared
  peaks equals one made from scratch.

Counts, never timings (the figures in docs/performance.md were measured separately)."""
import numpy as np
import pytest

import rnngraph as rg
import rnngraph.memory.planner as planner
import rnngraph.memory.simulate as simulate
import rnngraph.memory.strides as strides
import rnngraph.runtime.planning as planning
from rnngraph.runtime.simulated import SimulatedDevice

T, B, H, I = 12, 4, 8, 3


def _lstm(proj=None, lengths=False):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [B, None, I], name="X")
        L = rg.placeholder(rg.int32, [B], name="L") if lengths else None
        cell = rg.nn.rnn_cell.MultiRNNCell([rg.nn.LSTMCell(H, num_proj=proj) for _ in range(2)])
        out, _ = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32, sequence_length=L)
        loss = rg.reduce_sum(out * out)
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(0)
    fd = {X: rs.randn(B, T, I).astype(np.float32)}
    if lengths:
        fd[L] = np.array([T, 7, 11, 1], np.int32)
    return g, fetches, fd


def _static(steps=6):
    g = rg.Graph()
    with g.as_default():
        xs = [rg.placeholder(rg.float32, [B, I], name=f"x{t}") for t in range(steps)]
        out, _ = rg.nn.static_rnn(rg.nn.rnn_cell.GRUCell(H), xs, dtype=rg.float32)
        loss = rg.add_n([rg.reduce_sum(o * o) for o in out])
        fetches = [loss] + rg.gradients(loss, rg.global_variables())
    rs = np.random.RandomState(0)
    return g, fetches, {x: rs.randn(B, I).astype(np.float32) for x in xs}


def _emb_bidir(steps=8, V=10):
    """The issue's model, small: an embedding, two LSTM layers, a bidirectional GRU."""
    g = rg.Graph()
    with g.as_default():
        inp = rg.placeholder(rg.int32, [None, steps], name="inp")
        tgt = rg.placeholder(rg.int32, [None, steps], name="tgt")
        L = rg.placeholder(rg.int32, [None], name="L")
        emb = rg.get_variable("emb", [V, H])
        x = rg.nn.embedding_lookup(emb, inp)
        cell = rg.nn.rnn_cell.MultiRNNCell([rg.nn.rnn_cell.LSTMCell(H) for _ in range(2)])
        init = cell.zero_state(rg.shape(inp)[0], rg.float32)
        outs, _ = rg.nn.dynamic_rnn(cell, x, sequence_length=L, initial_state=init)
        (of, ob), _ = rg.nn.bidirectional_dynamic_rnn(
            rg.nn.rnn_cell.GRUCell(H), rg.nn.rnn_cell.GRUCell(H), outs, sequence_length=L,
            dtype=rg.float32)
        logits = rg.layers.dense(rg.concat([of, ob], 2), V)
        mask = rg.sequence_mask(L, steps, dtype=rg.float32)
        loss = rg.contrib.seq2seq.sequence_loss(logits, tgt, mask)
        fetches = [loss] + rg.gradients(loss, rg.trainable_variables())
    return g, fetches, {inp: (B, steps), tgt: (B, steps), L: (B,)}


MODELS = {"lstm": _lstm, "lstm_proj_lengths": lambda: _lstm(4, True), "static": _static,
          "emb_bidir": _emb_bidir}


def _top(g, fetches, fd):
    return rg.Session(g, device=SimulatedDevice()).memory_plan(fetches, fd).predicted_peak


def _session(g, budget, strategy):
    return rg.Session(g, device=SimulatedDevice(), memory_budget=budget,
                      memory_strategy=strategy, host_budget=10**9)


def _figures(plan):
    """What a plan decided and predicted, as plain data."""
    return dict(
        fits=bool(plan.fits), predicted_peak=int(plan.predicted_peak),
        keep_all_peak=int(plan.keep_all_peak), min_budget=plan.min_budget,
        extra_time=float(plan.extra_time), host_bytes=int(plan.host_bytes),
        chunk_steps=plan.chunk_steps, passes_off=list(plan.passes_off),
        passes_on=list(plan.passes_on), spilled=[(s.name, s.placement, s.bytes)
                                                 for s in plan.spilled],
        notes=list(plan.notes),
        loops=[(lp.checkpoint_every, lp.prefetch_depth, lp.checkpoint_slots,
                [(s.placement, s.why) for s in lp.saved]) for lp in plan.loops])


# Plans the planner made before its search shared simulations and the Session's plans
# survived a program's move (rnngraph 40866fb, the same cases; budget = int(unconstrained
# peak * fraction), host_budget 10**9; memory_plan given the fed shapes). The same 40 plans
# (3 strategies, 4 budgets, 4 models) were compared whole when the change was made; these
# cover a plan that fits, a chunked plan, a streamed one, spilled values, floors and notes.
RECORDED = {'emb_bidir/auto/0.45': {'chunk_steps': None,
                         'extra_time': 1.1059199999999999e-05,
                         'fits': False,
                         'host_bytes': 27648,
                         'keep_all_peak': 57348,
                         'loops': [[0, 1, 0,
                                    [['host', ''], ['host', ''], ['host', ''], ['host', ''],
                                     ['host', ''], ['host', ''], ['host', ''], ['host', ''],
                                     ['host', ''], ['host', ''], ['host', ''], ['host', ''],
                                     ['host', ''], ['host', ''], ['host', '']]],
                                   [0, 1, 0,
                                    [['device', ''], ['device', ''], ['host', ''], ['host', ''],
                                     ['host', ''], ['host', ''], ['host', '']]],
                                   [0, 1, 0,
                                    [['device', ''], ['device', ''], ['host', ''], ['host', ''],
                                     ['host', ''], ['host', ''], ['host', '']]]],
                         'min_budget': 28860,
                         'notes': ['no placement fits the budget: the rest of the peak is not '
                                   'saved tensors (stacked outputs, their gradients, inputs, '
                                   'weights)',
                                   'at the predicted peak the device holds: loop '
                                   "'gradients/rnn/while_grad' while it runs (its stacks, state "
                                   'and one step) 14.5 KiB, '
                                   "'rnn/multi_rnn_cell/cell_0/lstm_cell/kernel' (variable) 2.0 "
                                   "KiB, 'rnn/multi_rnn_cell/cell_1/lstm_cell/kernel' (variable) "
                                   "2.0 KiB, 'gradients/rnn/while_grad/ZerosLike_4' (zeros_like) "
                                   "2.0 KiB, 'gradients/rnn/while_grad/ZerosLike_6' (zeros_like) "
                                   '2.0 KiB, 26 more 7.3 KiB (of 29.8 KiB)',
                                   'stream_outputs: rnn/while: its output stays whole: '
                                   'bidirectional_rnn/fw/Dim (dim) reads '
                                   'bidirectional_rnn/fw/Transpose/shape whole (not per-step '
                                   'work, a sum over time, or a loop reading its rows)',
                                   'stream_outputs: bidirectional_rnn/fw/while: its output stays '
                                   'whole: Concat (concat) joins it with '
                                   'bidirectional_rnn/bw_reverse/ReverseSequence_1, which is not '
                                   'a sequence computed before the loop (of concat([fw, bw], -1), '
                                   'the direction whose loop runs last is streamed, reading the '
                                   "other's outputs a row per step)"],
                         'passes_off': ['hoist_sequence', 'sink_accumulators', 'sink_outputs'],
                         'passes_on': [],
                         'predicted_peak': 30476,
                         'spilled': []},
 'lstm/auto/0.45': {'chunk_steps': None,
                    'extra_time': 9.9456e-06,
                    'fits': True,
                    'host_bytes': 24576,
                    'keep_all_peak': 42808,
                    'loops': [[0, 1, 0,
                               [['host', ''], ['host', ''], ['host', ''], ['host', ''],
                                ['host', ''], ['host', ''], ['host', ''], ['host', ''],
                                ['host', ''], ['host', ''], ['host', ''], ['host', ''],
                                ['host', ''], ['host', ''], ['host', ''], ['host', '']]]],
                    'min_budget': None,
                    'notes': [],
                    'passes_off': ['hoist_sequence', 'sink_accumulators', 'sink_outputs'],
                    'passes_on': ['stream_outputs', 'host_sequences'],
                    'predicted_peak': 20280,
                    'spilled': []},
 'lstm/recompute/0.45': {'chunk_steps': None,
                         'extra_time': 0.0008248078500000001,
                         'fits': False,
                         'host_bytes': 0,
                         'keep_all_peak': 43332,
                         'loops': [[1, 1, 1,
                                    [['recompute', ''], ['recompute', ''], ['recompute', ''],
                                     ['recompute', ''], ['recompute', ''], ['recompute', ''],
                                     ['recompute', ''], ['recompute', ''], ['recompute', ''],
                                     ['recompute', ''], ['recompute', ''], ['recompute', ''],
                                     ['recompute', ''], ['recompute', ''], ['recompute', '']]]],
                         'min_budget': 21624,
                         'notes': ['no placement fits the budget: the rest of the peak is not '
                                   'saved tensors (stacked outputs, their gradients, inputs, '
                                   'weights)',
                                   'at the predicted peak the device holds: loop '
                                   "'gradients/rnn/while_grad' while it runs (its stacks, state "
                                   'and one step) 12.1 KiB, '
                                   "'rnn/multi_rnn_cell/cell_1/lstm_cell/kernel' (variable) 2.0 "
                                   "KiB, 'gradients/rnn/while_grad/ZerosLike_6' (zeros_like) 2.0 "
                                   "KiB, 'gradients/rnn/Transpose_1_grad/AddN' (add_n) 1.5 KiB, "
                                   "'rnn/multi_rnn_cell/cell_0/lstm_cell/kernel' (variable) 1.4 "
                                   'KiB, 16 more 3.9 KiB (of 22.9 KiB)'],
                         'passes_off': ['hoist_sequence', 'sink_accumulators', 'sink_outputs'],
                         'passes_on': [],
                         'predicted_peak': 23492,
                         'spilled': []},
 'lstm/recompute/0.7': {'chunk_steps': 4,
                        'extra_time': 0.0003416455000000001,
                        'fits': True,
                        'host_bytes': 0,
                        'keep_all_peak': 48772,
                        'loops': [[1, 1, 8,
                                   [['recompute', ''], ['recompute', ''], ['recompute', ''],
                                    ['recompute', ''], ['recompute', ''], ['recompute', ''],
                                    ['recompute', ''], ['recompute', ''], ['recompute', ''],
                                    ['recompute', ''], ['recompute', ''], ['recompute', ''],
                                    ['recompute', ''], ['recompute', ''], ['recompute', '']]]],
                        'min_budget': None,
                        'notes': [],
                        'passes_off': [],
                        'passes_on': [],
                        'predicted_peak': 32004,
                        'spilled': []},
 'lstm_proj_lengths/offload/0.0': {'chunk_steps': None,
                                   'extra_time': 9.5232e-06,
                                   'fits': False,
                                   'host_bytes': 23808,
                                   'keep_all_peak': 37492,
                                   'loops': [[0, 1, 0,
                                              [['host', ''], ['host', ''], ['host', ''],
                                               ['host', ''], ['host', ''], ['host', ''],
                                               ['host', ''], ['host', ''], ['host', ''],
                                               ['host', ''], ['host', ''], ['host', ''],
                                               ['host', ''], ['host', ''], ['host', ''],
                                               ['host', ''], ['host', '']]]],
                                   'min_budget': 13864,
                                   'notes': ['no placement fits the budget: the rest of the peak '
                                             'is not saved tensors (stacked outputs, their '
                                             'gradients, inputs, weights)',
                                             'at the predicted peak the device holds: loop '
                                             "'gradients/rnn/while_grad' while it runs (its "
                                             'stacks, state and one step) 8.4 KiB, '
                                             "'rnn/multi_rnn_cell/cell_1/lstm_cell/kernel' "
                                             '(variable) 1.0 KiB, '
                                             "'gradients/rnn/while_grad/ZerosLike_7' (zeros_like) "
                                             '1.0 KiB, '
                                             "'rnn/multi_rnn_cell/cell_0/lstm_cell/kernel' "
                                             '(variable) 896 B, '
                                             "'gradients/rnn/while_grad/ZerosLike_4' (zeros_like) "
                                             '896 B, 17 more 3.1 KiB (of 15.3 KiB)'],
                                   'passes_off': ['hoist_sequence', 'sink_accumulators',
                                                  'sink_outputs'],
                                   'passes_on': [],
                                   'predicted_peak': 15668,
                                   'spilled': []},
 'lstm_proj_lengths/recompute/0.45': {'chunk_steps': None,
                                      'extra_time': 0.0005309286,
                                      'fits': True,
                                      'host_bytes': 0,
                                      'keep_all_peak': 37492,
                                      'loops': [[2, 1, 0,
                                                 [['recompute', ''], ['recompute', ''],
                                                  ['recompute', ''], ['recompute', ''],
                                                  ['recompute', ''], ['recompute', ''],
                                                  ['recompute', ''], ['recompute', ''],
                                                  ['recompute', ''], ['recompute', ''],
                                                  ['recompute', ''], ['recompute', ''],
                                                  ['recompute', ''], ['recompute', ''],
                                                  ['recompute', ''], ['recompute', ''],
                                                  ['recompute', '']]]],
                                      'min_budget': None,
                                      'notes': [],
                                      'passes_off': ['hoist_sequence', 'sink_accumulators',
                                                     'sink_outputs'],
                                      'passes_on': [],
                                      'predicted_peak': 20212,
                                      'spilled': []},
 'static/auto/0.45': {'chunk_steps': None,
                      'extra_time': 0.000408424,
                      'fits': False,
                      'host_bytes': 0,
                      'keep_all_peak': 14436,
                      'loops': [],
                      'min_budget': 7336,
                      'notes': ['no placement fits the budget: the rest of the peak is not saved '
                                'tensors (stacked outputs, their gradients, inputs, weights)',
                                'at the predicted peak the device holds: '
                                "'rnn/gru_cell/gates/kernel' (variable) 704 B, "
                                "'gradients/rnn/step_5/gru_cell/Getitem_1_grad/GetitemGrad' "
                                '(getitem_grad) 704 B, '
                                "'gradients/rnn/step_5/gru_cell/Getitem_grad/GetitemGrad' "
                                '(getitem_grad) 704 B, '
                                "'gradients/rnn/gru_cell/gates/kernel_grad/AddN' (add) "
                                '[gradients/rnn/gru_cell/gates/kernel_grad/AddN/acc:0] 704 B, '
                                "'rnn/gru_cell/candidate/kernel' (variable) 352 B, 35 more 4.1 "
                                'KiB (of 7.2 KiB)'],
                      'passes_off': [],
                      'passes_on': [],
                      'predicted_peak': 7336,
                      'spilled': [['rnn/gru_cellZeroState/Fill:0', 'recompute', 128],
                                  ['rnn/step_0/gru_cell/MatMul:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Add:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/MatMul_1:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Add_1:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Sigmoid:0', 'recompute', 256],
                                  ['rnn/step_0/gru_cell/Split:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Split:1', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Mul:0', 'recompute', 128],
                                  ['rnn/step_0/gru_cell/MatMul_2:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Add_2:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/MatMul_3:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Add_3:0', 'recompute', 0],
                                  ['rnn/step_0/gru_cell/Tanh:0', 'recompute', 128],
                                  ['rnn/step_0/gru_cell/Sub:0', 'recompute', 128],
                                  ['rnn/step_1/gru_cell/Split:0', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/Split:1', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/Mul:0', 'recompute', 128],
                                  ['rnn/step_1/gru_cell/MatMul_2:0', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/Add_2:0', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/MatMul_3:0', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/Add_3:0', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/Tanh:0', 'recompute', 128],
                                  ['rnn/step_1/gru_cell/Mul_1:0', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/Sub:0', 'recompute', 128],
                                  ['rnn/step_1/gru_cell/Mul_2:0', 'recompute', 0],
                                  ['rnn/step_1/gru_cell/Add_4:0', 'recompute', 128],
                                  ['rnn/step_2/gru_cell/MatMul:0', 'recompute', 0],
                                  ['rnn/step_2/gru_cell/Add:0', 'recompute', 0],
                                  ['rnn/step_2/gru_cell/MatMul_1:0', 'recompute', 0],
                                  ['rnn/step_2/gru_cell/Add_1:0', 'recompute', 0],
                                  ['rnn/step_2/gru_cell/Sigmoid:0', 'recompute', 256],
                                  ['rnn/step_2/gru_cell/Split:0', 'recompute', 0],
                                  ['rnn/step_2/gru_cell/Split:1', 'recompute', 0],
                                  ['rnn/step_2/gru_cell/Mul:0', 'recompute', 128],
                                  ['rnn/step_2/gru_cell/Mul_2:0', 'recompute', 0],
                                  ['rnn/step_2/gru_cell/Add_4:0', 'recompute', 128],
                                  ['rnn/step_3/gru_cell/MatMul:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Add:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/MatMul_1:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Add_1:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Sigmoid:0', 'recompute', 256],
                                  ['rnn/step_3/gru_cell/Split:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Split:1', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Mul:0', 'recompute', 128],
                                  ['rnn/step_3/gru_cell/MatMul_2:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Add_2:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/MatMul_3:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Add_3:0', 'recompute', 0],
                                  ['rnn/step_3/gru_cell/Tanh:0', 'recompute', 128],
                                  ['rnn/step_3/gru_cell/Sub:0', 'recompute', 128],
                                  ['rnn/step_4/gru_cell/Split:0', 'recompute', 0],
                                  ['rnn/step_4/gru_cell/Split:1', 'recompute', 0],
                                  ['rnn/step_4/gru_cell/Mul:0', 'recompute', 128],
                                  ['rnn/step_4/gru_cell/MatMul_2:0', 'recompute', 0],
                                  ['rnn/step_4/gru_cell/Add_2:0', 'recompute', 0],
                                  ['rnn/step_4/gru_cell/MatMul_3:0', 'recompute', 0],
                                  ['rnn/step_4/gru_cell/Add_3:0', 'recompute', 0],
                                  ['rnn/step_4/gru_cell/Tanh:0', 'recompute', 128],
                                  ['rnn/step_4/gru_cell/Sub:0', 'recompute', 128]]},
 'static/offload/0.45': {'chunk_steps': None,
                         'extra_time': 0.0,
                         'fits': False,
                         'host_bytes': 0,
                         'keep_all_peak': 14436,
                         'loops': [],
                         'min_budget': 8392,
                         'notes': ['no placement fits the budget: the rest of the peak is not '
                                   'saved tensors (stacked outputs, their gradients, inputs, '
                                   'weights)',
                                   'at the predicted peak the device holds: '
                                   "'rnn/gru_cell/gates/kernel' (variable) 704 B, "
                                   "'gradients/rnn/step_5/gru_cell/Getitem_1_grad/GetitemGrad' "
                                   '(getitem_grad) 704 B, '
                                   "'gradients/rnn/step_5/gru_cell/Getitem_grad/GetitemGrad' "
                                   '(getitem_grad) 704 B, '
                                   "'gradients/rnn/gru_cell/gates/kernel_grad/AddN' (add) "
                                   '[gradients/rnn/gru_cell/gates/kernel_grad/AddN/acc:0] 704 B, '
                                   "'rnn/gru_cell/candidate/kernel' (variable) 352 B, 41 more 5.1 "
                                   'KiB (of 8.2 KiB)'],
                         'passes_off': [],
                         'passes_on': [],
                         'predicted_peak': 8392,
                         'spilled': []}}


# --- a plan, before and after ---------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(RECORDED))
def test_plans_are_those_the_planner_made_before(case):
    name, strategy, frac = case.split("/")
    g, fetches, fd = MODELS[name]()
    shapes = {k: tuple(np.shape(v)) if isinstance(v, np.ndarray) else v for k, v in fd.items()}
    budget = max(1, int(_top(g, fetches, shapes) * float(frac)))
    got = _figures(_session(g, budget, strategy).memory_plan(fetches, shapes))
    want = RECORDED[case]
    assert sorted(got) == sorted(want)
    for field, value in want.items():
        assert _plain(got[field]) == _plain(value), (case, field)


def _plain(x):
    """Tuples as lists, all the way down (the recorded figures are JSON)."""
    if isinstance(x, (list, tuple)):
        return [_plain(y) for y in x]
    return x


@pytest.mark.parametrize("strategy", ["auto", "offload", "recompute"])
def test_plans_made_with_the_shared_peaks_equal_plans_made_from_scratch(strategy):
    g, fetches, fd = _lstm()
    sess = rg.Session(g, device=SimulatedDevice())
    prog = sess.compile(fetches, list(fd))
    shapes = {prog.inputs[i]: tuple(a.shape) for i, a in enumerate(fd.values())}
    top = planner.make_plan(prog.schedule, shapes).keep_all_peak
    budgets = [int(top * f) for f in (0.9, 0.7, 0.55, 0.4, 0.2)] + [None]
    warm = [planner.make_plan(prog.schedule, shapes, b, strategy=strategy) for b in budgets]
    assert prog.schedule.peaks   # (the plans shared their simulations)
    for b, plan in zip(budgets, warm):
        prog.schedule.peaks.clear()
        cold = planner.make_plan(prog.schedule, shapes, b, strategy=strategy)
        assert _figures(plan) == _figures(cold), b


# --- how much work a plan does -----------------------------------------------------------------
def _count_simulations(monkeypatch):
    """[(model, schedule, the loop choices as data)] of every whole-schedule simulation."""
    seen = []
    run = simulate.PeakModel.run

    def counted(self, sched, choices, *args, **kwargs):
        if args == () and not kwargs:   # (a whole schedule, not a loop body's)
            seen.append((id(self), id(sched), tuple(sorted(
                (id(n), tuple(sorted(c.placements.items())), c.checkpoint_every,
                 c.prefetch_depth, c.slots) for n, c in choices.items()))))
        return run(self, sched, choices, *args, **kwargs)

    monkeypatch.setattr(simulate.PeakModel, "run", counted)
    return seen


def test_a_plan_simulates_each_set_of_choices_once(monkeypatch):
    g, fetches, fd = _lstm()
    seen = _count_simulations(monkeypatch)
    budget = int(_top(g, fetches, fd) * 0.45)
    seen.clear()
    plan = _session(g, budget, "recompute").memory_plan(fetches, fd)
    assert not plan.fits and plan.min_budget is not None   # (the floor was searched for)
    assert len(seen) > 10
    # the same program at its budget and at the floor's: its choices simulated once in all
    assert len({(s, c) for _, s, c in seen}) == len(seen)


def test_the_strides_are_worked_out_once_per_plan(monkeypatch):
    g, fetches, fd = _lstm()
    sess = rg.Session(g, device=SimulatedDevice())
    prog = sess.compile(fetches, list(fd))
    shapes = {prog.inputs[i]: tuple(a.shape) for i, a in enumerate(fd.values())}
    top = planner.make_plan(prog.schedule, shapes).keep_all_peak
    outputs = sum(len(n.outputs) for n in prog.schedule.nodes)
    calls = []
    output = strides.Layouts.output
    monkeypatch.setattr(strides.Layouts, "output",
                        lambda self, node, j, view: calls.append(node) or
                        output(self, node, j, view))
    seen = _count_simulations(monkeypatch)
    planner.make_plan(prog.schedule, shapes, int(top * 0.5), strategy="recompute")
    top_level = [c for c in calls if any(c is n for n in prog.schedule.nodes)]
    assert len(seen) > 3 and 0 < len(top_level) <= outputs


# --- a run with the same shapes plans nothing again -------------------------------------------
@pytest.mark.parametrize("name,frac", [("lstm", 0.45), ("static", 0.5)])
def test_runs_with_the_same_shapes_plan_once_even_when_a_program_moves(monkeypatch, name,
                                                                       frac):
    g, fetches, fd = MODELS[name]()
    budget = int(_top(g, fetches, fd) * frac)
    sess = _session(g, budget, "recompute")
    # tiered compiles as with the accelerated backend: NumPy kernels first, a new Program
    # once hot (here on NumPy kernels again, so the test needs no numba)
    monkeypatch.setattr(sess, "_tiered", lambda: True)
    compile_uncached = sess._compile_uncached
    moved = []

    def compile_again(fetches, fed, tracked, passes, accelerate=True):
        moved.append(accelerate)
        return compile_uncached(fetches, fed, tracked, passes, False)

    monkeypatch.setattr(sess, "_compile_uncached", compile_again)
    plans = []
    make_plan = planning.make_plan
    monkeypatch.setattr(planning, "make_plan",
                        lambda *a, **k: plans.append(1) or make_plan(*a, **k))
    per_run, first = [], None
    for _ in range(7):
        plans.clear()
        moved.clear()
        sess.run(fetches, fd)
        per_run.append((len(plans), sum(1 for a in moved if a)))
        plan = sess.memory_plan(fetches, {k: v.shape for k, v in fd.items()})
        if first is None:
            first = _figures(plan)
        else:   # (a moved program's plan: made anew for its schedule, the same decisions)
            assert _figures(plan)["loops"] == first["loops"]
            assert plan.min_budget == first["min_budget"]
    assert per_run[0][0] > 2   # (the first run searched)
    # later runs: a plan made only for a program that moved to the other backend, once each
    for made, hot in per_run[1:]:
        assert made <= hot, per_run
    assert sum(hot for _, hot in per_run[1:]) >= 1, per_run   # (a program did move)
    assert per_run[-1] == (0, 0), per_run
