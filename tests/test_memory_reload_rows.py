"""A saved program's row marks when its passes run again (issue 29): shrink_batch's `shrink`
(a loop runs its steps on the active rows only) and `rows_only` / `unzeroed` (stacks whose
finished rows no reader looks at, so they are left unwritten) are saved with the program. A
program saved with sink_gather on (its loops shrunk, the forward stacks left unzeroed for the
shrunk gradient loop), reloaded and rerun with the sequence passes in chunks, chunks its
gradient loop, which then runs whole rows (chunks mix rows in their sums). Before, the stale
marks stayed: the forward loop left its stacks' finished rows unwritten and the chunked loop
computed on them (right values, the rows masked later, but wasted work and NumPy overflow
warnings on garbage). Now shrink_batch drops the marks a chunked loop cannot keep and marks
the stacks from their readers again, as the fresh (unsaved) program's."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.passes.shrink_batch import shrink_active_batch
from rnngraph.runtime import buffer_pool

from test_memory_chunks import _close, _loops, _program, _run_saved
from test_memory_embedding import _graph, _numpy_grads

ONLY = {"sink_gather": True, "hoist_sequence": False, "sink_accumulators": False,
        "sink_outputs": False}


def _poisoned(monkeypatch):
    """Pooled buffers handed out uninitialised are filled with the dtype's largest value, so a
    step reading a row nobody wrote overflows (deterministic garbage)."""
    get = buffer_pool.BufferPool.get

    def poisoned_get(self, slot, shape, dtype, zero_from=None):
        arr = get(self, slot, shape, dtype, zero_from)
        if np.issubdtype(np.dtype(dtype), np.floating):
            arr[:len(arr) if zero_from is None else zero_from] = np.finfo(dtype).max
        return arr

    monkeypatch.setattr(buffer_pool.BufferPool, "get", poisoned_get)


def _case(T=13, B=4, H=5, V=7, E=3):
    g, fetches, fd = _graph(T, B, H, V, E, lengths=True)
    L = next(k for k in fd if k.node.name == "L")
    fd[L][0] = 0   # a row of length 0: none of its forward steps run
    return g, fetches, fd


def _saved(tmp_path, sess):
    prog = _program(sess)
    fed = {f"fed_{i}": v for i, v in enumerate(prog.inputs)}
    outs = {f"out_{i}": v for i, v in enumerate(prog.outputs)}
    path = rg.io.save(str(tmp_path / "sunk.rg"), graph=prog.graph, fetches={**fed, **outs})
    return rg.io.read(path), prog


def _rerun(again, saved, prog, sess, g, fd):
    """Session `again` (of the saved program) run as `prog` was fed by `fd`, with the variables'
    values `sess` (of graph `g`) holds; (its outputs, those values by name)."""
    values = {saved.fetches[f"fed_{i}"]: fd[next(k for k in fd if k.node.name == v.node.name)]
              for i, v in enumerate(prog.inputs)}
    store = {v.node.name: sess.run(v) for v in g.collections["variables"]}
    values.update({v: store[v.node.name] for v in saved.graph.collections["variables"]})
    return again.run([saved.fetches[f"out_{i}"] for i in range(len(prog.outputs))],
                     values), store


def _marks(graph) -> list:
    return [(n.op.reverse, n.op.shrink, n.op.rows_only, n.op.unzeroed, n.op.chunk_steps)
            for n in _loops(graph)]


@pytest.mark.parametrize("passes", [{"chunk_steps": 4},
                                    {"chunk_steps": 5, "hoist_sequence": False}],
                         ids=["chunks", "chunks-no-hoist"])
def test_a_reloaded_sink_gather_program_rerun_in_chunks_reads_only_written_rows(
        tmp_path, monkeypatch, passes):
    g, fetches, fd = _case()
    sess = rg.Session(g, passes=ONLY)
    got = sess.run(fetches, fd)
    saved, prog = _saved(tmp_path, sess)
    # the saved program's marks: the gradient loop shrunk, the forward stacks unzeroed for it
    assert [m[1] for m in _marks(saved.graph)] == [True, True]
    assert all(m[2] for m in _marks(saved.graph) if not m[0])
    _poisoned(monkeypatch)
    fresh = rg.Session(g, passes={"sink_gather": True, **passes})
    with np.errstate(over="raise", invalid="raise"):
        want = fresh.run(fetches, fd)
        again = rg.Session(saved.graph, passes=passes)
        out = _run_saved(saved, prog, sess, g, fd)   # (the saved marks, no passes: as saved)
        rerun, store = _rerun(again, saved, prog, sess, g, fd)
    for a, b in zip(out, got):
        assert np.array_equal(a, b)
    # no loop both chunked and shrunk; the rerun program's marks are those shrink_batch gives
    # its loops unmarked (no stale mark left), and, where the fresh program has the same loops
    # (without hoist_sequence: with it, the fresh forward loop is chunked too, its prologue
    # gathering blocks of rows; the saved one gathers in its steps already), the fresh ones
    graph = _program(again).graph
    marks = _marks(graph)
    assert not any(m[1] and m[4] for m in marks)
    assert any(m[4] for m in marks)   # (the gradient loop runs in chunks)
    for n in _loops(graph):
        n.op.shrink, n.op.rows_only, n.op.unzeroed = False, (), ()
    shrink_active_batch(graph)
    assert _marks(graph) == marks
    if passes.get("hoist_sequence") is False:
        assert marks == _marks(_program(fresh).graph)
    _close(rerun[:len(want)], want, rtol=1e-5)
    ids, L = (next(a for k, a in fd.items() if k.node.name == name) for name in ("ids", "L"))
    emb, kernel, bias = (store[v.node.name].astype(np.float64)
                         for v in g.collections["variables"])
    _close(rerun[:len(want)], _numpy_grads(ids, emb, kernel, bias, L), rtol=2e-5)


def test_shrink_batch_drops_the_mark_of_a_loop_chunked_after_it():
    """The pass itself: a shrunk loop that a later compile chunked is unmarked (it runs whole
    rows), and the stacks it reads are zeroed again (no rows_only / unzeroed for it)."""
    g, fetches, fd = _case()
    sess = rg.Session(g, passes=ONLY)
    sess.run(fetches, fd)
    graph = _program(sess).graph
    fwd, bwd = sorted(_loops(graph), key=lambda n: n.op.reverse)
    assert bwd.op.shrink and fwd.op.rows_only
    bwd.op.chunk_steps = 4   # (what a rerun of sink_accumulators in chunks does to it)
    assert shrink_active_batch(graph) == 1
    assert not bwd.op.shrink and bwd.op.rows_only == bwd.op.unzeroed == ()
    assert fwd.op.shrink and fwd.op.rows_only == fwd.op.unzeroed == ()


@pytest.mark.parametrize("passes", [{"chunk_steps": 4, "shrink_batch": False},
                                    {"shrink_batch": False}], ids=["chunks", "whole"])
def test_a_reloaded_program_rerun_with_shrink_batch_off_runs_whole_rows(
        tmp_path, monkeypatch, passes):
    """shrink_batch switched off on a saved program whose loops it marked: the saved marks are
    cleared (every step runs on the whole batch, every stack zeroed past the active rows), so
    a rerun in chunks reads no unwritten row. Before, the pass that clears stale marks did not
    run and the chunked gradient loop computed on rows the forward loop left unwritten."""
    g, fetches, fd = _case()
    sess = rg.Session(g, passes=ONLY)
    sess.run(fetches, fd)
    saved, prog = _saved(tmp_path, sess)
    assert any(m[1] for m in _marks(saved.graph)) and any(m[2] for m in _marks(saved.graph))
    _poisoned(monkeypatch)
    with np.errstate(over="raise", invalid="raise"):
        want = rg.Session(g, passes={"sink_gather": True, **passes}).run(fetches, fd)
        again = rg.Session(saved.graph, passes=passes)
        rerun, store = _rerun(again, saved, prog, sess, g, fd)
    graph = _program(again).graph
    assert all(not m[1] and m[2] == m[3] == () for m in _marks(graph))
    assert any(m[4] for m in _marks(graph)) == ("chunk_steps" in passes)
    assert not any(n.op.only_loops_read for n in graph.nodes if n.op.name == "rows_matmul")
    _close(rerun[:len(want)], want, rtol=1e-5)
    ids, L = (next(a for k, a in fd.items() if k.node.name == name) for name in ("ids", "L"))
    emb, kernel, bias = (store[v.node.name].astype(np.float64)
                         for v in g.collections["variables"])
    _close(rerun[:len(want)], _numpy_grads(ids, emb, kernel, bias, L), rtol=2e-5)
