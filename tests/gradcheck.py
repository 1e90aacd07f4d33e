"""Numerical gradient checking: symbolic gradients (rg.gradients) vs central differences.

check_gradients(build, inputs) builds a fresh graph with one float64 placeholder per input,
calls build(**placeholders) for an output Value (or a list of them), forms
loss = sum_i reduce_sum(out_i * R_i) with fixed random R_i fed at run time (so every output
element gets a distinct weight), and compares d loss / d input against finite differences of
the loss, evaluated by re-running the forward graph.
"""
from __future__ import annotations

import numpy as np

import rnngraph as rg
from rnngraph.autodiff import gradients
from rnngraph.runtime.session import Session


def check_gradients(build, inputs: dict, atol: float = 1e-6, rtol: float = 1e-5, *,
                    shapes: dict | None = None, eps: float = 1e-6, seed: int = 0,
                    allow_none: bool = False):
    """Assert that rg.gradients of `build`'s output matches central differences.

    Args:
      build: called as build(**placeholders); returns a float64 Value or a list of them.
      inputs: name -> array; each becomes a float64 placeholder of that name.
      shapes: optional name -> static placeholder shape (None for dims unknown until run time);
        defaults to each array's full shape.
      allow_none: accept a None gradient for an input the output does not depend on (it is
        then checked against a zero numerical gradient).
    Returns (symbolic, numerical): dicts name -> array, for further checks.
    """
    # copies: the finite differences perturb them in place
    arrays = {k: np.array(v, dtype=np.float64) for k, v in inputs.items()}
    shapes = shapes or {}
    graph = rg.Graph()
    with graph.as_default():
        phs = {k: rg.placeholder(rg.float64, shapes.get(k, a.shape), name=k)
               for k, a in arrays.items()}
        out = build(**phs)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        for o in outs:
            assert o.dtype == np.float64, f"build must return float64 values, got {o.type}"
        sess = Session(graph)
        feed = {phs[k]: a for k, a in arrays.items()}
        forward = sess.run(outs, feed)
        for o, f in zip(outs, forward):
            assert o.type.accepts(np.shape(f)), f"{o.name}: static type {o.type}, ran {np.shape(f)}"
        rng = np.random.default_rng(seed)
        weights = [rg.placeholder(rg.float64, o.shape, name="R") for o in outs]
        feed.update({w: rng.standard_normal(np.shape(f)) for w, f in zip(weights, forward)})
        loss = rg.add_n([rg.reduce_sum(o * w) for o, w in zip(outs, weights)])
        grads = gradients(loss, [phs[k] for k in arrays])
        rg.verify(graph)  # gradient nodes must keep the IR invariants (types re-inferred)

    fetch = [g for g in grads if g is not None]
    got = iter(sess.run(fetch, feed))
    symbolic = {}
    for k, g in zip(arrays, grads):
        if g is None:
            assert allow_none, f"gradient w.r.t. {k!r} is None"
            symbolic[k] = np.zeros_like(arrays[k])
            continue
        assert g.dtype == np.float64, f"gradient w.r.t. {k!r} has dtype {g.dtype}"
        value = next(got)
        assert g.type.accepts(value.shape), \
            f"gradient w.r.t. {k!r}: static {g.type}, ran {value.shape}"
        assert value.shape == arrays[k].shape, f"gradient w.r.t. {k!r} has shape {value.shape}"
        symbolic[k] = value

    numerical = {}
    for k, a in arrays.items():
        num = np.zeros_like(a)
        flat = a.reshape(-1)  # a view: perturbing it perturbs the fed array
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            plus = sess.run(loss, feed)
            flat[i] = orig - eps
            minus = sess.run(loss, feed)
            flat[i] = orig
            num.reshape(-1)[i] = (plus - minus) / (2 * eps)
        numerical[k] = num

    for k in arrays:
        np.testing.assert_allclose(symbolic[k], numerical[k], atol=atol, rtol=rtol,
                                   err_msg=f"gradient w.r.t. {k!r}")
    return symbolic, numerical
