"""Random numbers as graph nodes, counter-based: Philox4x32-10 (Salmon et al., SC'11).

The numbers a random node draws are a pure function of

    (seed pair, run counter, step index, element index)

- the *seed pair* `(seed, seed2)` is fixed when the node is built, by TF1's rules (`get_seed`:
  the graph seed from `set_random_seed` and the op's `seed=`); it is the Philox key;
- the *run counter* is an input: the value of the graph's `random/run_counter` variable, which
  every run that draws random numbers increments once (an `assign`, so a failed run leaves it
  as it was, and `Saver` saves it with the other variables);
- the *step index* is an input: inside a loop body the loop's step param `t`; in `static_rnn`
  the Python step number (see `step_scope`); 0 elsewhere;
- the *element index* is the row-major position in the output.

So a loop draws fresh numbers at every step, a static unroll draws exactly the numbers of the
dynamic loop, recomputing a loop step (the memory planner) replays the same numbers, running
only a prefix of a loop's batch rows keeps every row's numbers, and every backend draws the
same bits. The Philox counter block is (element block, step, run counter, attempt) and the key
is the seed pair, each 32 bits; one block gives four 32-bit words.

The algorithm is written once, as data (`PHILOX`: multipliers, key increments, rounds, for 32
and 64-bit words): `philox` evaluates it on any array module, and `philox_cuda_source` writes
the CUDA function the CuPy kernel compiles from the same table. The 64-bit instance
(Philox4x64-10) is NumPy's `np.random.Philox` bit generator: tests check the shared code
against it, and the 32-bit instance against the published known-answer vectors.

From bits to numbers: uniform floats take the top 24 (float32), 53 (float64, two words) or
11 (float16) bits, in [0, 1); normals use Box-Muller on pairs of uniforms; truncated normals
redraw values beyond two standard deviations from a new attempt stream, as TF does.
"""
from __future__ import annotations

import threading
import zlib
from typing import NamedTuple

import numpy as np

from ..dtypes import as_dtype
from ..errors import ShapeError, user_location
from ..ir.graph import get_default_graph
from ..ir.types import TensorType
from ..ir.value import Value
from . import initializers as inits
from .base import Op, apply, as_value
from .fill import zeros
from .sources import Constant as _ConstantOp
from .sources import assign, get_variable

M32 = 0xFFFFFFFF
DEFAULT_GRAPH_SEED = 87654321   # TF1's, used when only an op seed is given
DERIVED = 1 << 63               # op seeds counted by get_seed (not given by the user)
MAX_ATTEMPTS = 256              # truncated normal: redraws (each keeps 95.4% of what is left)


class PhiloxSpec(NamedTuple):
    width: int          # bits per word
    mul: tuple          # the two round multipliers
    bump: tuple         # the two key increments (Weyl sequence)
    rounds: int


PHILOX = {
    32: PhiloxSpec(32, (0xD2511F53, 0xCD9E8D57), (0x9E3779B9, 0xBB67AE85), 10),
    64: PhiloxSpec(64, (0xD2E7470EE14C6C93, 0xCA5A826395121157),
                   (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B), 10),
}


def _mulhilo(xp, a, m: int, width: int):
    """(high, low) words of the double-width product a * m (a: array of words)."""
    if width == 32:
        p = a.astype(np.uint64) * np.uint64(m)
        return (p >> np.uint64(32)).astype(np.uint32), p.astype(np.uint32)
    # 64 x 64 -> 128 bits from 32-bit halves (no overflow: each partial sum fits 64 bits)
    lo32 = np.uint64(M32)
    s32 = np.uint64(32)
    a_hi, a_lo = a >> s32, a & lo32
    m_hi, m_lo = np.uint64(m >> 32), np.uint64(m & M32)
    ll, hl, lh, hh = a_lo * m_lo, a_hi * m_lo, a_lo * m_hi, a_hi * m_hi
    cross = (ll >> s32) + (hl & lo32) + lh
    hi = hh + (hl >> s32) + (cross >> s32)
    with np.errstate(over="ignore"):   # the low word wraps around by definition
        return hi, a * np.uint64(m)


def philox(xp, counter, key, width: int = 32):
    """Philox4xW-10 of counter words (c0, c1, c2, c3) under key (k0, k1); each counter word is
    an array (or scalar) of unsigned W-bit ints. Returns the four output words as arrays."""
    spec = PHILOX[width]
    word = np.uint32 if width == 32 else np.uint64
    mask = (1 << width) - 1
    c0, c1, c2, c3 = (xp.asarray(c, dtype=word) for c in counter)
    c0, c1, c2, c3 = xp.broadcast_arrays(c0, c1, c2, c3)
    k0, k1 = int(key[0]) & mask, int(key[1]) & mask
    for r in range(spec.rounds):
        hi0, lo0 = _mulhilo(xp, c0, spec.mul[0], width)
        hi1, lo1 = _mulhilo(xp, c2, spec.mul[1], width)
        c0, c1, c2, c3 = hi1 ^ c1 ^ word(k0), lo1, hi0 ^ c3 ^ word(k1), lo0
        k0, k1 = (k0 + spec.bump[0]) & mask, (k1 + spec.bump[1]) & mask
    return c0, c1, c2, c3


def philox_cuda_source(name: str = "rg_philox4x32") -> str:
    """A CUDA device function `name(c0, c1, c2, c3, k0, k1, out[4])` computing Philox4x32-10
    from the PHILOX table (the CuPy backend compiles it; nothing here comes from data)."""
    spec = PHILOX[32]
    lines = [f"__device__ void {name}(unsigned int c0, unsigned int c1, unsigned int c2, "
             "unsigned int c3, unsigned int k0, unsigned int k1, unsigned int* out) {",
             "  unsigned int hi0, lo0, hi1, lo1;"]
    for _ in range(spec.rounds):
        lines += [f"  hi0 = __umulhi({spec.mul[0]:#x}u, c0); lo0 = {spec.mul[0]:#x}u * c0;",
                  f"  hi1 = __umulhi({spec.mul[1]:#x}u, c2); lo1 = {spec.mul[1]:#x}u * c2;",
                  "  c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;",
                  f"  k0 += {spec.bump[0]:#x}u; k1 += {spec.bump[1]:#x}u;"]
    lines += ["  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;", "}"]
    return "\n".join(lines)


# --- the stream of one node ---------------------------------------------------------------------
def key_of(seed: int, seed2: int) -> tuple[int, int]:
    """The Philox key of a seed pair: two 32-bit words (seeds are folded to 32 bits each)."""
    return ((seed ^ (seed >> 32)) & M32, (seed2 ^ (seed2 >> 32)) & M32)


def words(xp, n: int, key, step: int, run: int, attempt: int = 0):
    """The first `n` 32-bit words of the stream (key, step, run, attempt), as uint32 [n]."""
    blocks = -(-n // 4)
    if blocks > 2**32:
        raise ValueError(f"cannot draw {n} random numbers in one node (at most {2**34})")
    c0 = xp.arange(blocks, dtype=np.uint32)
    out = philox(xp, (c0, step & M32, run & M32, attempt & M32), key)
    return xp.stack(out, axis=1).reshape(-1)[:n]


def words_at(xp, index, key, step: int, run: int, attempt: int = 0):
    """The words at positions `index` (a uint array) of the same stream as `words`."""
    index = xp.asarray(index, dtype=np.uint64)
    block = (index >> np.uint64(2)).astype(np.uint32)
    lane = (index & np.uint64(3)).astype(np.intp)
    out = xp.stack(philox(xp, (block, step & M32, run & M32, attempt & M32), key), axis=1)
    return xp.take_along_axis(out, lane[:, None], axis=1)[:, 0]


def _uniform_words(dtype) -> int:
    return 2 if np.dtype(dtype) == np.float64 else 1


def uniform_from_words(xp, w, dtype):
    """Uniform floats in [0, 1) from uint32 words (two words per float64 number)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        hi = (w[..., 0::2] >> np.uint32(5)).astype(np.float64)   # 27 bits
        lo = (w[..., 1::2] >> np.uint32(6)).astype(np.float64)   # 26 bits
        return (hi * 67108864.0 + lo) * (1.0 / 9007199254740992.0)
    if dtype == np.float16:
        return ((w >> np.uint32(21)).astype(np.float32) * np.float32(2.0 ** -11)).astype(dtype)
    return (w >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)


def _uniform(xp, n, dtype, key, step, run, attempt=0, index=None):
    k = _uniform_words(dtype)
    if index is None:
        w = words(xp, n * k, key, step, run, attempt)
    else:   # numbers at `index`: their words are k*i .. k*i + k - 1
        base = xp.asarray(index, dtype=np.uint64) * np.uint64(k)
        w = words_at(xp, xp.stack([base + np.uint64(j) for j in range(k)], axis=1).reshape(-1),
                     key, step, run, attempt)
    return uniform_from_words(xp, w, dtype)


def _normal(xp, n, dtype, key, step, run, attempt=0, index=None):
    """Box-Muller: number i is component i % 2 of pair i // 2 (uniforms 2p and 2p + 1)."""
    calc = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    if index is None:
        pairs = -(-n // 2)
        u = _uniform(xp, 2 * pairs, calc, key, step, run, attempt)
        u1, u2 = u[0::2], u[1::2]
        r = xp.sqrt(calc(-2.0) * xp.log(calc(1.0) - u1))
        theta = calc(2.0 * np.pi) * u2
        z = xp.stack([r * xp.cos(theta), r * xp.sin(theta)], axis=1).reshape(-1)[:n]
    else:
        index = xp.asarray(index, dtype=np.uint64)
        pair = index >> np.uint64(1)
        u1 = _uniform(xp, None, calc, key, step, run, attempt, pair * np.uint64(2))
        u2 = _uniform(xp, None, calc, key, step, run, attempt, pair * np.uint64(2) + np.uint64(1))
        r = xp.sqrt(calc(-2.0) * xp.log(calc(1.0) - u1))
        theta = calc(2.0 * np.pi) * u2
        z = xp.where((index & np.uint64(1)) == 0, r * xp.cos(theta), r * xp.sin(theta))
    return z.astype(dtype)


def _truncated_normal(xp, n, dtype, key, step, run):
    """Normals with every |z| > 2 redrawn from the next attempt's stream at the same index."""
    z = _normal(xp, n, dtype, key, step, run)
    bad = xp.nonzero(xp.abs(z) > 2)[0]
    attempt = 1
    while bad.size and attempt < MAX_ATTEMPTS:
        redraw = _normal(xp, None, dtype, key, step, run, attempt, bad)
        z[bad] = redraw
        bad = bad[xp.abs(redraw) > 2]
        attempt += 1
    if bad.size:   # probability 0.0455 ** 256 per number
        z[bad] = xp.clip(z[bad], -2, 2)
    return z


def draw(xp, dist: str, shape, dtype, key, step: int, run: int):
    """The numbers of a node: `dist` 'uniform' | 'normal' | 'truncated_normal' | 'bits'."""
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dist == "bits":
        out = words(xp, n, key, step, run)
    elif dist == "uniform":
        out = _uniform(xp, n, dtype, key, step, run)
    elif dist == "normal":
        out = _normal(xp, n, dtype, key, step, run)
    elif dist == "truncated_normal":
        out = _truncated_normal(xp, n, dtype, key, step, run)
    else:
        raise ValueError(f"unknown distribution {dist!r}")
    return out.astype(dtype, copy=False).reshape(shape)


# --- the op -------------------------------------------------------------------------------------
DISTRIBUTIONS = ("uniform", "normal", "truncated_normal", "bits")


class RandomStandard(Op):
    """Standard random numbers: uniform in [0, 1), normal, truncated normal (|z| <= 2), or raw
    uint32 bits. Inputs: the run counter (int64 scalar), the step index (int32 scalar) and,
    when `shape` is None, a tensor whose run-time shape the output takes (read for its shape
    only). The numbers are a pure function of (seed, seed2, counter, step, element index)."""
    name = "random_standard"
    foldable = False
    differentiable = False

    def __init__(self, dist: str, shape, dtype, seed: int, seed2: int, loc: float = 0.0,
                 scale: float = 1.0):
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"dist must be one of {DISTRIBUTIONS}, got {dist!r}")
        self.dist = dist
        self.shape = None if shape is None else tuple(int(d) for d in shape)
        self.dtype = "uint32" if dist == "bits" else as_dtype(dtype).name
        self.seed, self.seed2 = int(seed), int(seed2)
        self.loc, self.scale = float(loc), float(scale)   # out = loc + scale * standard

    @property
    def shape_inputs(self):
        return (2,) if self.shape is None else ()

    def infer(self, counter, step, *like):
        _check_counter(counter, step)
        if self.dist != "bits" and np.dtype(self.dtype).kind != "f":
            raise TypeError(f"random numbers of dtype {self.dtype}: use a float dtype")
        return _drawn_type(self.shape, self.dtype, like)

    def key(self):
        return key_of(self.seed, self.seed2)

    def compute(self, xp, counter, step, *like):
        shape = like[0].shape if self.shape is None else self.shape
        return self.affine(draw(xp, self.dist, shape, self.dtype, self.key(), int(step),
                                int(counter)))

    def affine(self, z):
        """loc + scale * z, in the output dtype (nothing for the standard form and bits)."""
        if self.dist == "bits" or (self.loc == 0.0 and self.scale == 1.0):
            return z
        t = np.dtype(self.dtype).type
        return z * t(self.scale) + t(self.loc)

    def as_initializer(self, node):
        """An initializer drawing exactly what this node draws in the first run of a fresh
        session (`rg.Variable(rg.random_normal([3, 4], seed=1))`); None without a static
        shape."""
        if self.shape is None or self.dist == "bits" or not isinstance(node.inputs[1].node.op,
                                                                       _ConstantOp):
            return None
        return inits.Draw(self.dist, self.seed, self.seed2, self.loc, self.scale,
                    int(node.inputs[1].node.op.value))

    def vjp(self, node, g):
        return [None] * len(node.inputs)

    def __repr__(self):
        shape = "like" if self.shape is None else list(self.shape)
        aff = "" if (self.loc, self.scale) == (0.0, 1.0) else f", loc={self.loc}, scale={self.scale}"
        return (f"random_standard[{self.dist}, {shape}, {self.dtype}, "
                f"seed=({self.seed}, {self.seed2}){aff}]")


class RandomUniformInt(Op):
    """Integers uniform in [minval, maxval) (tf.random_uniform with an int dtype): the value
    minval + (bits mod (maxval - minval)), from one 32-bit word per int32 number and two per
    int64 number (as TF's, the modulo's bias is below range / 2**32, resp. / 2**64). Inputs as
    random_standard's: the run counter, the step index and, without a static shape, a tensor
    giving the run-time shape."""
    name = "random_uniform_int"
    foldable = False
    differentiable = False

    def __init__(self, shape, dtype, minval: int, maxval: int, seed: int, seed2: int):
        self.shape = None if shape is None else tuple(int(d) for d in shape)
        self.dtype = as_dtype(dtype).name
        if self.dtype not in ("int32", "int64"):
            raise TypeError(f"random_uniform_int: dtype must be int32 or int64, got {dtype}")
        info = np.iinfo(self.dtype)
        self.minval, self.maxval = int(minval), int(maxval)
        if not info.min <= self.minval < self.maxval <= info.max:
            raise ValueError(f"random_uniform_int needs {info.min} <= minval < maxval <= "
                             f"{info.max}, got minval={minval}, maxval={maxval}")
        self.seed, self.seed2 = int(seed), int(seed2)

    @property
    def shape_inputs(self):
        return (2,) if self.shape is None else ()

    def infer(self, counter, step, *like):
        _check_counter(counter, step)
        return _drawn_type(self.shape, self.dtype, like)

    def compute(self, xp, counter, step, *like):
        shape = tuple(like[0].shape if self.shape is None else self.shape)
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        key = key_of(self.seed, self.seed2)
        span = np.uint64(self.maxval - self.minval)   # 1 .. 2**64 - 1
        if self.dtype == "int32":
            bits = words(xp, n, key, int(step), int(counter)).astype(np.uint64)
        else:
            w = words(xp, 2 * n, key, int(step), int(counter)).astype(np.uint64)
            bits = (w[0::2] << np.uint64(32)) | w[1::2]
        low = np.uint64(self.minval % 2**64)          # two's complement: the sum wraps right
        out = (bits % span + low).astype(np.int64)
        return out.astype(self.dtype).reshape(shape)

    def vjp(self, node, g):
        return [None] * len(node.inputs)


class RandomShuffle(Op):
    """value with its rows (axis 0) in a random order: rows sorted by one random word each."""
    name = "random_shuffle"
    foldable = False
    differentiable = False

    def __init__(self, seed: int, seed2: int):
        self.seed, self.seed2 = int(seed), int(seed2)

    def infer(self, value, counter, step):
        _check_counter(counter, step)
        if value.rank < 1:
            raise ShapeError(f"random_shuffle needs a tensor of rank >= 1, got {value}")
        return value

    def permutation(self, xp, n: int, counter, step):
        w = words(xp, n, key_of(self.seed, self.seed2), int(step), int(counter))
        return xp.argsort(w, kind="stable")

    def compute(self, xp, value, counter, step):
        return value[self.permutation(xp, value.shape[0], counter, step)]

    def vjp(self, node, g):
        return [None, None, None]


class Multinomial(Op):
    """`num_samples` class indices per row of `logits` [batch, classes], drawn with the
    Gumbel-max trick: argmax(logits + g), g = -log(-log(u)), one u per (row, sample, class)."""
    name = "multinomial"
    foldable = False
    differentiable = False

    def __init__(self, num_samples: int, output_dtype, seed: int, seed2: int):
        self.num_samples = int(num_samples)
        self.output_dtype = as_dtype(output_dtype).name
        self.seed, self.seed2 = int(seed), int(seed2)

    def infer(self, logits, counter, step):
        _check_counter(counter, step)
        if logits.rank != 2:
            raise ShapeError(f"logits must be [batch, num_classes], got {logits}")
        if np.dtype(logits.dtype).kind != "f":
            raise TypeError(f"logits must be floating point, got {logits.dtype}")
        if np.dtype(self.output_dtype) not in (np.int32, np.int64):
            raise TypeError(f"output_dtype must be int32 or int64, got {self.output_dtype}")
        return TensorType((logits.shape[0], self.num_samples), self.output_dtype)

    def compute(self, xp, logits, counter, step):
        b, c = logits.shape
        u = draw(xp, "uniform", (b, self.num_samples, c), np.float64,
                 key_of(self.seed, self.seed2), int(step), int(counter))
        gumbel = -xp.log(-xp.log1p(-u))   # u in [0, 1): 1 - u in (0, 1]
        scores = logits.astype(np.float64)[:, None, :] + gumbel
        return xp.argmax(scores, axis=2).astype(self.output_dtype)

    def vjp(self, node, g):
        return [None, None, None]


def _drawn_type(shape, dtype, like) -> TensorType:
    """A random node's type: its static `shape`, or (None) the shape of its one `like` input."""
    if shape is None:
        if len(like) != 1:
            raise ShapeError("a random node without a static shape reads one `like` input")
        return TensorType(like[0].shape, dtype)
    if like:
        raise ShapeError("a random node with a static shape takes no `like` input")
    return TensorType(shape, dtype)


def _check_counter(counter, step):
    if counter.rank != 0 or np.dtype(counter.dtype).kind not in "iu":
        raise TypeError(f"the run counter must be an int scalar, got {counter}")
    if step.rank != 0 or np.dtype(step.dtype).kind not in "iu":
        raise TypeError(f"the step index must be an int scalar, got {step}")


# --- seeds (TF1's rules) ------------------------------------------------------------------------
_SEED_KEY = "random_seed"       # root collections: [graph seed] once set_random_seed ran
_COUNT_KEY = "random_ops"       # root collections: one entry per op seed handed out
_COUNTER_KEY = "random_counter" # root collections: [the run counter Value]
COUNTER_KEY = _COUNTER_KEY      # (the Saver finds the counter variable through it)


def _check_seed(seed, what: str = "seed"):
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{what} must be an int or None, got {type(seed).__name__} {seed!r} "
                        f"(at {user_location()})")
    if not -2**63 <= int(seed) < 2**64:
        raise ValueError(f"{what} must fit 64 bits, got {seed} (at {user_location()})")
    return int(seed) & (2**64 - 1)


def set_random_seed(seed):
    """Set the graph-level seed of the default graph (tf.set_random_seed): random ops built
    afterwards without `seed=` take op seeds from a per-graph count, so the same program
    draws the same numbers in every session and process."""
    seed = _check_seed(seed)
    root = get_default_graph().root
    if seed is None:
        root.collections.pop(_SEED_KEY, None)
    else:
        root.collections[_SEED_KEY] = [seed]


def get_seed(op_seed=None):
    """(graph seed, op seed) for a new random op, by TF1's rules: with a graph seed and no op
    seed, the op seed is the number of op seeds this graph handed out so far; with only an op
    seed, the graph seed is DEFAULT_GRAPH_SEED. With neither, rnngraph stays deterministic
    (unlike TF1, which then picks a seed at random): DEFAULT_GRAPH_SEED and the count. Counted
    op seeds have the top bit set (DERIVED), so they never equal a small explicit seed."""
    op_seed = _check_seed(op_seed)
    root = get_default_graph().root
    graph_seed = root.collections.get(_SEED_KEY, [DEFAULT_GRAPH_SEED])[0]
    if op_seed is None:   # counted in their own half of the seeds, apart from explicit ones
        count = root.collections.setdefault(_COUNT_KEY, [])
        op_seed = DERIVED | len(count)
        count.append(op_seed)
    return graph_seed, op_seed


def salted(seed2: int, salt: str) -> int:
    """A second op seed derived from `seed2` for one named use (DropoutWrapper's input,
    state and output masks)."""
    return (seed2 * 0x9E3779B1 + zlib.crc32(salt.encode())) & (2**64 - 1)


def run_counter():
    """The graph's run counter for this run: `random/run_counter` incremented once by every run
    that reads it (an int64 variable, saved with the others; not trainable)."""
    root = get_default_graph().root
    found = root.collections.get(_COUNTER_KEY)
    if found:
        return found[0]
    with root.as_default(), root.absolute_scope(""):
        var = get_variable("random/run_counter", [], np.int64, inits.Zeros(), trainable=False)
        nxt = assign(var, var + np.int64(1), name="random/next_run")
    root.collections[_COUNTER_KEY] = [nxt]
    return nxt


# --- the step index -----------------------------------------------------------------------------
_local = threading.local()


class step_scope:
    """Random ops built inside take `step` (an int or int32 scalar Value) as their step index:
    static_rnn wraps step t's cell call in step_scope(t), so its numbers are the ones the
    dynamic loop draws at step t."""

    def __init__(self, step):
        self.step = step

    def __enter__(self):
        if not hasattr(_local, "steps"):
            _local.steps = []
        _local.steps.append(self.step)
        return self.step

    def __exit__(self, *exc):
        _local.steps.pop()
        return False


def current_step():
    """The step index a random op built here reads: the innermost step_scope's, else the
    enclosing loop body's step param, else 0."""
    steps = getattr(_local, "steps", None)
    graph = get_default_graph()
    if steps:
        step = steps[-1]
        if not isinstance(step, Value) or step.graph is graph or step.graph.is_ancestor_of(graph):
            return step
    if graph.parent is not None and graph.params.get("step"):
        return graph.params["step"][0]
    return 0


def _step_value(step):
    if step is None:
        step = current_step()
    if isinstance(step, Value):
        return step
    return as_value(np.int32(int(step)))


# --- builders -----------------------------------------------------------------------------------
def _float_dtype(dtype, what="dtype"):
    dt = as_dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"{what} must be a float dtype, got {dt} (at {user_location()})")
    return dt


def _shape_of(shape):
    """(static shape or None, like input or None) from a list of ints / scalar int Values."""
    if isinstance(shape, Value):
        raise TypeError(f"shape must be a list of ints (or scalar int Values), got the tensor "
                        f"{shape.name}; pass rg.zeros_like(x) as like= (at {user_location()})")
    if isinstance(shape, (int, np.integer)):
        shape = [shape]
    shape = list(shape)
    for d in shape:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer, Value)):
            raise TypeError(f"shape entries must be ints or scalar int Values, got {d!r} "
                            f"(at {user_location()})")
        if not isinstance(d, Value) and d < 0:
            raise ValueError(f"shape entries must be >= 0, got {shape} (at {user_location()})")
    if all(not isinstance(d, Value) for d in shape):
        return tuple(int(d) for d in shape), None
    return None, zeros(shape, np.bool_)


def random_standard(dist, shape=None, dtype=np.float32, seed=None, like=None, step=None,
                    name=None, seed_pair=None, loc=0.0, scale=1.0):
    """The raw node: `shape` (ints) or `like` (a tensor giving the run-time shape); the
    numbers are loc + scale * the standard distribution's."""
    graph_seed, op_seed = seed_pair if seed_pair is not None else get_seed(seed)
    inputs = [run_counter(), _step_value(step)]
    if like is not None:
        inputs.append(as_value(like))
        shape = None
    op = RandomStandard(dist, shape, dtype, graph_seed, op_seed, loc, scale)
    return apply(op, inputs, name=name or f"random_{dist}")


def _number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _affine_draw(dist, shape, dtype, seed, name, loc, scale):
    """A draw scaled and shifted inside the node when loc and scale are numbers; by graph ops
    after it when either is a tensor (so gradients reach them)."""
    _check_seed(seed)                # every check before anything is built or counted
    static, like = _shape_of(shape)
    pair = get_seed(seed)
    if _number(loc) and _number(scale):
        return random_standard(dist, static, dtype, like=like, name=name, loc=float(loc),
                               scale=float(scale), seed_pair=pair)
    z = random_standard(dist, static, dtype, like=like, name=name, seed_pair=pair)
    return z * as_value(scale, dtype=dtype) + as_value(loc, dtype=dtype)


def _check_stddev(stddev):
    if isinstance(stddev, (int, float, np.number)) and not stddev >= 0:
        raise ValueError(f"stddev must be >= 0, got {stddev} (at {user_location()})")


def random_normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    """Normal random numbers of `shape` (tf.random_normal / tf.random.normal). `shape`: ints,
    or scalar int Values for sizes known at run time."""
    dtype = _float_dtype(dtype)
    _check_stddev(stddev)
    return _affine_draw("normal", shape, dtype, seed, name, mean, stddev)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    """Normal numbers within two standard deviations of the mean; those beyond are redrawn
    (tf.truncated_normal)."""
    dtype = _float_dtype(dtype)
    _check_stddev(stddev)
    return _affine_draw("truncated_normal", shape, dtype, seed, name, mean, stddev)


def _int_bound(x, what):
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x.item()
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"random_uniform with an int dtype: {what} must be a Python int, got "
                        f"{x!r} (at {user_location()})")
    return int(x)


def random_uniform(shape, minval=0, maxval=None, dtype=np.float32, seed=None, name=None):
    """Uniform random numbers in [minval, maxval) (tf.random_uniform); maxval defaults to 1 for
    float dtypes. With dtype int32 or int64 (as TF1) maxval is required and the numbers are
    integers in [minval, maxval); minval and maxval are ints there (not tensors)."""
    dt = as_dtype(dtype)
    if dt.kind in "iu":
        if dt not in (np.dtype(np.int32), np.dtype(np.int64)):
            raise TypeError(f"random_uniform: an int dtype must be int32 or int64, got {dt} "
                            f"(at {user_location()})")
        if maxval is None:
            raise ValueError(f"random_uniform: must specify maxval for integer dtype {dt} "
                             f"(at {user_location()})")
        lo, hi = _int_bound(minval, "minval"), _int_bound(maxval, "maxval")
        info = np.iinfo(dt)
        if not info.min <= lo < hi <= info.max:
            raise ValueError(f"random_uniform needs minval < maxval within {dt}, got "
                             f"minval={lo}, maxval={hi} (at {user_location()})")
        _check_seed(seed)
        static, like = _shape_of(shape)
        graph_seed, op_seed = get_seed(seed)
        inputs = [run_counter(), _step_value(None)] + ([like] if like is not None else [])
        return apply(RandomUniformInt(static, dt, lo, hi, graph_seed, op_seed), inputs,
                     name=name or "random_uniform")
    dtype = _float_dtype(dtype)
    if maxval is None:
        maxval = 1.0
    if _number(minval) and _number(maxval):
        if not minval < maxval:
            raise ValueError(f"random_uniform needs minval < maxval, got minval={minval}, "
                             f"maxval={maxval} (at {user_location()})")
        return _affine_draw("uniform", shape, dtype, seed, name, minval,
                            float(maxval) - float(minval))
    _check_seed(seed)
    lo, hi = as_value(minval, dtype=dtype), as_value(maxval, dtype=dtype)
    static, like = _shape_of(shape)
    pair = get_seed(seed)
    u = random_standard("uniform", static, dtype, like=like, name=name, seed_pair=pair)
    return u * (hi - lo) + lo


def random_shuffle(value, seed=None, name=None):
    """`value` with its first dimension shuffled (tf.random_shuffle)."""
    graph_seed, op_seed = get_seed(seed)
    return apply(RandomShuffle(graph_seed, op_seed),
                 [as_value(value), run_counter(), _step_value(None)], name=name or "random_shuffle")


def multinomial(logits, num_samples, seed=None, name=None, output_dtype=np.int64):
    """Class indices drawn from the unnormalised log-probabilities `logits` [batch, classes]:
    [batch, num_samples] (tf.multinomial)."""
    if isinstance(num_samples, (bool, np.bool_)) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 0:
        raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r} "
                         f"(at {user_location()})")
    graph_seed, op_seed = get_seed(seed)
    return apply(Multinomial(num_samples, output_dtype, graph_seed, op_seed),
                 [as_value(logits), run_counter(), _step_value(None)], name=name or "multinomial")


def categorical(logits, num_samples, dtype=None, seed=None, name=None):
    """tf.random.categorical: multinomial with `dtype` (default int64)."""
    return multinomial(logits, num_samples, seed, name, output_dtype=dtype or np.int64)

