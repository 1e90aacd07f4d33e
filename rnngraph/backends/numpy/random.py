"""NumPy kernels of the random ops: the op's own stream definition (ops/random.py), evaluated
for several steps at once.

A random node inside a loop body runs once per step with the step index as an input; drawing
its small per-step arrays one by one costs Philox's hundred-odd NumPy calls each time. The
kernel therefore draws the numbers of an aligned window of WINDOW steps (same run counter, same
shape) in one vectorised pass and hands out one step's slice per call: the numbers are exactly
those of the reference compute for each (counter, step), only computed earlier. A call outside
the current window (another run, another shape, a backward replay) draws its own window. Large
draws (more than WINDOW_WORDS words per step) are not windowed.
"""
from __future__ import annotations

import threading

import numpy as np

from ...kernels import register
from ...ops import random as rnd

CPU = "numpy"
WINDOW = 16                 # steps drawn together
WINDOW_WORDS = 1 << 15      # per-step words up to which windows are used (a window: 2 MiB)


def _words_for(dist: str, dtype, n: int) -> int:
    """32-bit words a draw of n numbers uses."""
    if dist == "bits":
        return n
    per = rnd._uniform_words(dtype)
    if dist == "normal":
        return 2 * (-(-n // 2)) * per
    return n * per


def _finish(op, dist, dtype, w, n, shape):
    """Numbers of shape `shape` from the words of one step (the last axis of w holds them)."""
    if dist == "bits":
        return w[..., :n].reshape(shape)
    if dist == "uniform":
        u = rnd.uniform_from_words(np, w, dtype).astype(dtype, copy=False)
        return op.affine(u[..., :n].reshape(shape))
    calc = np.float64 if dtype == np.float64 else np.float32
    u = rnd.uniform_from_words(np, w, calc)
    u1, u2 = u[..., 0::2], u[..., 1::2]
    r = np.sqrt(calc(-2.0) * np.log(calc(1.0) - u1))
    theta = calc(2.0 * np.pi) * u2
    z = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)
    z = z.reshape(z.shape[:-2] + (-1,))[..., :n]
    return op.affine(z.astype(dtype, copy=False).reshape(shape))


@register(rnd.RandomStandard, CPU)
def random_standard(op, node, program):
    if op.dist not in ("bits", "uniform", "normal"):
        return None   # truncated normal redraws a data-dependent subset: the reference does it
    key, dist, dtype = op.key(), op.dist, np.dtype(op.dtype)
    local = threading.local()   # (counter, shape, first step) -> the window's words

    def block_words(counter, steps, n_words):
        """Words [len(steps), n_words] of the streams (counter, step) for each step."""
        blocks = -(-n_words // 4)
        if blocks > 2**32:
            raise ValueError(f"node {node.name}: cannot draw {n_words} random words in one run")
        c0 = np.arange(blocks, dtype=np.uint32)
        c1 = (np.asarray(steps, dtype=np.int64) & rnd.M32).astype(np.uint32)[:, None]
        out = rnd.philox(np, (c0[None, :], c1, int(counter) & rnd.M32, 0), key)
        w = np.stack(out, axis=-1).reshape(len(steps), -1)
        return w[:, :n_words]

    def run(counter, step, *like):
        shape = tuple(like[0].shape if op.shape is None else op.shape)
        n = int(np.prod(shape, dtype=np.int64))
        n_words = _words_for(dist, dtype, n)
        step = int(step)
        if n_words > WINDOW_WORDS:
            return _finish(op, dist, dtype, block_words(counter, [step], n_words)[0], n, shape)
        first = step - step % WINDOW
        cached = getattr(local, "window", None)
        if cached is None or cached[0] != (int(counter), shape, first):
            words = block_words(counter, range(first, first + WINDOW), n_words)
            cached = local.window = ((int(counter), shape, first), words)
        return _finish(op, dist, dtype, cached[1][step - first], n, shape)
    return run
