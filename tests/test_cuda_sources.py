"""The CuPy backend's CUDA kernels, checked without a GPU (backends/cupy/cuda_codegen.py).

- every fused group of the LSTM (plain, and with peepholes, a projection and a cell clip), GRU
  and BasicRNN bodies, forward and backward, with and without sequence_length, float32 and
  float64, gets one generated kernel (no group falls back to array code);
- each source compiles with NVRTC for compute_90 (PTX with exactly one .entry, its name) and
  sm_80 (skipped where the nvidia-cuda-nvrtc wheel is not installed: the NumPy-only job);
- kernel names are the same in another process (a hash of the source);
- the same source text, compiled as C++ on the CPU (a few defines stand in for CUDA's
  built-in variables), runs the whole RNN forward and backward through the CuPy backend's own
  host code (a stand-in `cupy` module whose RawKernel is the compiled C++), and gives the
  NumPy backend's results: index math of column blocks, joins, broadcasting, strided views,
  the grid-stride loop, and every op's C expression against its reference compute (NaN too);
- dims unknown at build time that differ raise the NumPy kernel's own InvalidArgumentError;
- StepRows (ops/steps.py) keeps device rows on their device.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.backends.cupy import cuda_codegen, fused as cupy_fused, kernel_sources, nvrtc
from rnngraph.backends.cupy.cuda_codegen import CudaKernel, Declined, cuda_kernel
from rnngraph.backends.cupy.sources import compiled_graph, fused_nodes
from rnngraph.backends.numpy.fused import numpy_kernel
from rnngraph.errors import InvalidArgumentError, KernelCompileError
from rnngraph.ir.types import TensorType
from rnngraph.io.registry import op_registry
from rnngraph.ops import elementwise as ew
from rnngraph.ops.fused import Fused
from rnngraph.ops.reduce import AddN
from rnngraph.ops.scalar import SCALAR
from rnngraph.ops.shape import ColumnBlock, Concat
from rnngraph.ops.steps import StepRows
from rnngraph.runtime.devices import Device

CELLS = {
    "lstm": lambda n: rg.nn.LSTMCell(n),
    "lstm_peephole_proj_clip": lambda n: rg.nn.LSTMCell(n, use_peepholes=True, num_proj=n // 2,
                                                        cell_clip=3.0),
    "gru": lambda n: rg.nn.GRUCell(n),
    "basic": lambda n: rg.nn.BasicRNNCell(n),
}
CONFIGS = [(kind, lengths, dtype) for kind in CELLS for lengths in (False, True)
           for dtype in ("float32", "float64")]
CONFIG_IDS = [f"{k}-{'lengths' if n else 'full'}-{d}" for k, n, d in CONFIGS]


def rnn_graph(kind, lengths, dtype, hidden=16, inputs=5):
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(dtype, [None, None, inputs], name="X")
        seq = rg.placeholder(rg.int32, [None], name="seq")
        out, state = rg.nn.dynamic_rnn(CELLS[kind](hidden), X, dtype=dtype,
                                       sequence_length=seq if lengths else None)
        loss = rg.reduce_sum(out * out) + rg.reduce_sum(rg.nest.flatten(state)[-1])
        grads = rg.gradients(loss, [X] + rg.global_variables())
    feed = {X: None, seq: None} if lengths else {X: None}
    return g, [loss] + grads, feed


def rnn_feed(feed, dtype, batch=4, steps=6, inputs=5, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for v in feed:
        if v.name.startswith("X"):
            out[v] = rng.standard_normal((batch, steps, inputs)).astype(dtype)
        else:
            out[v] = np.array([6, 0, 3, 5][:batch], np.int32)
    return out


# --- every op of the cells' groups has a C form ------------------------------------------------
@pytest.mark.parametrize("kind,lengths,dtype", CONFIGS, ids=CONFIG_IDS)
def test_every_fused_group_of_the_cells_gets_one_kernel(kind, lengths, dtype):
    g, fetches, feed = rnn_graph(kind, lengths, dtype)
    nodes = fused_nodes(compiled_graph(fetches, feed))
    assert nodes
    names = set()
    for node in nodes:
        spec = cuda_kernel(node.op, [v.type for v in node.inputs])
        assert isinstance(spec, CudaKernel), (kind, spec)
        assert spec.source.count("__global__") == 1
        names |= {op.name for op, _ in node.op.instrs}
    if kind.startswith("lstm"):
        assert {"column_block", "concat", "sigmoid", "tanh"} <= names
    if kind == "gru":
        assert "column_block" in names
    if lengths:
        assert {"where", "zeros_like"} <= names
    assert len(kernel_sources(fetches, feed)) == len({cuda_kernel(
        n.op, [v.type for v in n.inputs]).name for n in nodes})


def test_every_fusible_op_has_a_c_expression():
    for name, cls in op_registry().items():
        if getattr(cls, "fusible", False) and name not in ("column_block", "concat"):
            assert hasattr(cls, "cexpr"), name
    assert hasattr(ColumnBlock, "c_index")


# --- NVRTC -------------------------------------------------------------------------------------
needs_nvrtc = pytest.mark.skipif(not nvrtc.available(),
                                 reason="NVRTC not installed (pip install nvidia-cuda-nvrtc-cu12)")
_COMPILED: set = set()


@needs_nvrtc
@pytest.mark.parametrize("kind,lengths,dtype", CONFIGS, ids=CONFIG_IDS)
def test_kernel_sources_compile_with_nvrtc(kind, lengths, dtype):
    g, fetches, feed = rnn_graph(kind, lengths, dtype)
    sources = kernel_sources(fetches, feed)
    assert sources
    for name, source in sources.items():
        if name in _COMPILED:
            continue
        ptx = nvrtc.compile_source(source, "compute_90").decode()
        entries = [line for line in ptx.splitlines() if ".entry" in line]
        assert len(entries) == 1 and f".entry {name}(" in entries[0], entries
        _COMPILED.add(name)
    if (kind, lengths, dtype) == ("lstm", True, "float32"):
        for source in sources.values():
            cubin = nvrtc.compile_source(source, "sm_80")
            assert cubin[:4] == b"\x7fELF"


@needs_nvrtc
def test_nvrtc_reports_its_log():
    with pytest.raises(KernelCompileError) as info:
        nvrtc.compile_source('extern "C" __global__ void f(float* x) { x[0] = nowhere; }')
    assert "nowhere" in info.value.log
    with pytest.raises(ValueError, match="arch"):
        nvrtc.compile_source("", arch="compute_90; rm")
    assert nvrtc.version() >= (12, 0)


@needs_nvrtc
def test_nvrtc_leaves_the_global_symbol_namespace_alone():
    # loading NVRTC must not put its libraries' symbols in the process's global namespace
    # (RTLD_GLOBAL): a fresh process compiles, then looks the symbols up globally
    script = (
        "import ctypes, glob, os, sys\n"
        "from rnngraph.backends.cupy import nvrtc\n"
        "nvrtc.compile_source('extern \"C\" __global__ void f(float* x) { x[0] = 1; }')\n"
        "major, minor = nvrtc.version()\n"
        "names = [f'__nvrtc_builtins__{major}_{minor}_getArchBuiltins', 'nvrtcVersion']\n"
        "seen = [n for n in names if hasattr(ctypes.CDLL(None), n)]\n"
        "print('compiled', seen)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "compiled []"


def test_kernel_names_are_the_same_in_another_process_without_cupy():
    script = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_cuda_sources import rnn_graph, kernel_sources\n"
        "names = []\n"
        "for kind in ('lstm', 'gru'):\n"
        "    g, fetches, feed = rnn_graph(kind, True, 'float32')\n"
        "    names += sorted(kernel_sources(fetches, feed))\n"
        "print(json.dumps([names, 'cupy' in sys.modules]))\n")
    here = []
    for kind in ("lstm", "gru"):
        g, fetches, feed = rnn_graph(kind, True, "float32")
        here += sorted(kernel_sources(fetches, feed))
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)],
                             env=env, capture_output=True, text=True, timeout=300, check=True)
        names, imported_cupy = json.loads(out.stdout.strip().splitlines()[-1])
        assert names == here and not imported_cupy   # (and CuPy was never imported)
    assert all(n.startswith("rnngraph_fused_") for n in here)


def test_kernel_sources_needs_no_gpu_and_checks_its_arguments():
    g, fetches, feed = rnn_graph("lstm", False, "float32")
    sources = kernel_sources(fetches, {"X": 0})   # a name works as a key, the value is unused
    assert sources == kernel_sources(fetches, feed)
    assert kernel_sources(fetches, feed, passes=False) == {}   # no fusion, no kernel
    with pytest.raises(ValueError, match="names no value"):
        kernel_sources(fetches, {"nope": 0})
    with pytest.raises(TypeError, match="feed_dict"):
        kernel_sources(fetches, [1])
    with pytest.raises(ValueError, match="unknown passes"):
        kernel_sources(fetches, feed, passes={"no_such_pass": True})
    other, f2, _ = rnn_graph("gru", False, "float32")
    with pytest.raises(ValueError, match="another graph than .*the first fetch"):
        kernel_sources([fetches[0], f2[0]])
    with pytest.raises(ValueError, match="belongs to another graph"):
        kernel_sources(fetches, {f2[0]: 0})


# --- the same sources as C++ on the CPU ----------------------------------------------------------
_SHIM = """
#include <cmath>
using std::abs; using std::exp; using std::log; using std::pow; using std::sqrt; using std::tanh;
struct rg_uint3 { unsigned int x, y, z; };
extern "C" {
rg_uint3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
}
#define __global__
"""


class _Dim3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


@pytest.fixture(scope="module")
def cxx(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler to run the CUDA sources on the CPU")
    folder = tmp_path_factory.mktemp("cuda_as_cpp")
    built: dict = {}

    def build(source: str, name: str):
        if name not in built:
            cpp = folder / f"{name}.cpp"
            cpp.write_text(_SHIM + source)
            lib = folder / f"{name}.so"
            subprocess.run([compiler, "-O1", "-shared", "-fPIC", "-o", str(lib), str(cpp)],
                           check=True, capture_output=True, timeout=120)
            built[name] = ctypes.CDLL(str(lib))
        return built[name]
    return build


class _CpuRawKernel:
    """cupy.RawKernel on the CPU: the source as C++, every (block, thread) called in turn."""
    launches = 0

    def __init__(self, source, name, build):
        self.lib = build(source, name)
        self.fn = getattr(self.lib, name)
        self.dims = {v: _Dim3.in_dll(self.lib, v)
                     for v in ("threadIdx", "blockIdx", "blockDim", "gridDim")}

    def __call__(self, grid, block, args):
        cargs = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray)
                 else ctypes.c_longlong(int(a)) for a in args]
        assert all(isinstance(a, (np.ndarray, np.int64)) for a in args)
        self.dims["blockDim"].x, self.dims["gridDim"].x = block[0], grid[0]
        for b in range(grid[0]):
            self.dims["blockIdx"].x = b
            for t in range(block[0]):
                self.dims["threadIdx"].x = t
                self.fn(*cargs)
        type(self).launches += 1


def _cpu_cupy(build):
    """A stand-in `cupy` module: NumPy's functions, with RawKernel compiled as C++."""
    mod = types.ModuleType("cupy")
    mod.__getattr__ = lambda name: getattr(np, name)
    mod.ndarray = np.ndarray
    mod.RawKernel = lambda source, name: _CpuRawKernel(source, name, build)
    return mod


@pytest.fixture
def cpu_cupy(cxx):
    return _cpu_cupy(cxx)


@pytest.fixture
def cpu_gpu(cpu_cupy):
    """A device whose kernels are the CuPy backend's, run on the CPU."""
    class CpuGpu(Device):
        name = "gpu"
        xp = cpu_cupy
    return CpuGpu()


@pytest.fixture
def count_kernels(monkeypatch):
    made = []
    original = cupy_fused.cupy_kernel

    def spy(op, node, cp):
        k = original(op, node, cp)
        made.append(getattr(k, "cuda_kernel", None))
        return k
    monkeypatch.setattr(cupy_fused, "cupy_kernel", spy)
    import rnngraph.backends.cupy as backend
    monkeypatch.setattr(backend, "cupy_kernel", spy)
    return made


@pytest.mark.parametrize("kind,lengths,dtype", CONFIGS, ids=CONFIG_IDS)
def test_generated_kernels_give_the_numpy_results(kind, lengths, dtype, cpu_gpu, count_kernels):
    g, fetches, feed = rnn_graph(kind, lengths, dtype)
    fd = rnn_feed(feed, dtype)
    want = rg.Session(g).run(fetches, fd)
    before = _CpuRawKernel.launches
    got = rg.Session(g, device=cpu_gpu).run(fetches, fd)
    assert count_kernels and all(isinstance(k, CudaKernel) for k in count_kernels)
    assert {k.name for k in count_kernels} == set(kernel_sources(fetches, feed))
    assert _CpuRawKernel.launches - before >= 6   # (the loops' steps ran the kernels)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


def _node(types_, name="f"):
    return SimpleNamespace(inputs=[SimpleNamespace(type=t) for t in types_], name=name,
                           location="test.py:1")


def _fused(instrs, in_types, exports):
    """A Fused op over inputs of `in_types` (static types inferred instruction by instruction)."""
    types_ = list(in_types)
    for op, refs in instrs:
        t = op.infer(*[types_[r] for r in refs])
        types_.append(t if isinstance(t, TensorType) else t[0])
    n = len(in_types)
    return Fused(instrs, n, exports, [types_[r] for r in exports], types_[n:],
                 [(f"op{j}", "test.py:1") for j in range(len(instrs))])


def _gates_program(dtype="float32"):
    """Column blocks of an input [?, 12] and a bias [12], a block of a computed value, a
    per-row mask [?, 1], a scalar, and a join of three parts into [?, 12]."""
    T = lambda *s: TensorType(s, dtype)  # noqa: E731
    ins = [T(None, 12), T(12), TensorType((None, 1), "bool"), T(), T(None, 4)]
    n = len(ins)
    instrs = []

    def add(op, *refs):
        instrs.append((op, refs))
        return n + len(instrs) - 1
    blocks = [add(ColumnBlock(4 * i, 4 * i + 4), 0) for i in range(3)]
    bias = [add(ColumnBlock(4 * i, 4 * i + 4), 1) for i in range(3)]
    gates = [add(ew.Add(), b, c) for b, c in zip(blocks, bias)]
    i_g = add(ew.Sigmoid(), gates[0])
    j_g = add(ew.Tanh(), gates[1])
    scaled = add(ew.Mul(), 0, 3)                  # x * s, then a block of it (recomputed)
    late = add(ColumnBlock(8, 12), scaled)
    o_g = add(ew.Add(), late, gates[2])
    c = add(ew.Add(), add(ew.Mul(), i_g, j_g), 4)
    zero = add(ew.ZerosLike(), c)
    masked = add(ew.Where(), 2, c, zero)
    join = add(Concat(1), i_g, masked, o_g)
    return _fused(instrs, ins, [masked, join]), ins


def _arrays(types_, rng, batch=5, strided=False):
    out = []
    for t in types_:
        shape = tuple(batch if d is None else d for d in t.shape)
        if t.dtype == np.bool_:
            a = rng.random(shape) > 0.4
        else:
            a = rng.standard_normal(shape).astype(t.dtype)
        if strided and a.ndim == 2 and a.shape[1] > 1:
            wide = np.zeros((shape[0] * 2, shape[1] * 3), a.dtype)
            wide[::2, 1::3] = a
            a = wide[::2, 1::3]          # a view with strides of neither 1 nor the width
        out.append(a)
    return out


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_column_blocks_joins_and_broadcasts(cpu_cupy, dtype, strided):
    op, ins = _gates_program(dtype)
    node = _node(ins)
    spec = cuda_kernel(op, ins)
    assert isinstance(spec, CudaKernel)
    args = _arrays(ins, np.random.default_rng(1), strided=strided)
    assert not strided or not args[0].flags.c_contiguous
    want = numpy_kernel(op, node, np)(*args)
    got = cupy_fused.cupy_kernel(op, node, cpu_cupy)(*args)
    assert [g.shape for g in got] == [(5, 4), (5, 12)]
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    if nvrtc.available():
        ptx = nvrtc.compile_source(spec.source, "compute_90").decode()
        assert ptx.count(".entry") == 1


def test_each_thread_loops_when_the_grid_is_capped(cpu_cupy, monkeypatch):
    monkeypatch.setattr(cuda_codegen, "MAX_BLOCKS", 2)
    monkeypatch.setattr(cuda_codegen, "THREADS", 3)
    monkeypatch.setattr(cupy_fused, "THREADS", 3)
    op, ins = _gates_program()
    args = _arrays(ins, np.random.default_rng(2), batch=7)
    want = numpy_kernel(op, _node(ins), np)(*args)
    got = cupy_fused.cupy_kernel(op, _node(ins), cpu_cupy)(*args)   # 6 threads, 28 elements
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_outputs_smaller_than_the_domain_are_written_once(cpu_cupy):
    f = TensorType((None, 6), "float64")
    row = TensorType((None, 1), "float64")
    op = _fused([(ew.Exp(), (1,)), (ew.Mul(), (0, 2))], [f, row], [2, 3])
    args = _arrays([f, row], np.random.default_rng(3))
    want = numpy_kernel(op, _node([f, row]), np)(*args)
    got = cupy_fused.cupy_kernel(op, _node([f, row]), cpu_cupy)(*args)
    assert got[0].shape == (5, 1) and got[1].shape == (5, 6)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    assert "if (c1 == 0)" in cuda_kernel(op, [f, row]).source


def test_rank_three_broadcasts_and_scalar_groups(cpu_cupy):
    a = TensorType((None, 1, 4), "float64")
    b = TensorType((3, 1), "float64")
    c = TensorType((), "float64")
    op = _fused([(ew.Mul(), (0, 1)), (ew.Sub(), (3, 2)), (ew.Tanh(), (4,))], [a, b, c], [4, 5])
    args = _arrays([a, b, c], np.random.default_rng(5))
    wide = np.zeros((5, 2, 8))
    wide[:, :1, ::2] = args[0]
    args[0] = wide[:, :1, ::2]   # a strided view of rank 3
    want = numpy_kernel(op, _node([a, b, c]), np)(*args)
    got = cupy_fused.cupy_kernel(op, _node([a, b, c]), cpu_cupy)(*args)
    assert [g.shape for g in got] == [(5, 3, 4), (5, 3, 4)]
    for x, y in zip(want, got):
        np.testing.assert_allclose(y, x, rtol=1e-12)
    s1, s2 = TensorType((), "float32"), TensorType((), "float32")
    op = _fused([(ew.Maximum(), (0, 1)), (ew.Exp(), (2,))], [s1, s2], [2, 3])
    x, y = np.float32(0.5), np.float32(-1.0)
    got = cupy_fused.cupy_kernel(op, _node([s1, s2]), cpu_cupy)(np.array(x), np.array(y))
    assert got[0].shape == () and got[1] == np.exp(np.float32(0.5))


def test_empty_batches_launch_nothing(cpu_cupy):
    op, ins = _gates_program()
    before = _CpuRawKernel.launches
    got = cupy_fused.cupy_kernel(op, _node(ins), cpu_cupy)(*_arrays(ins, np.random.default_rng(0),
                                                                    batch=0))
    assert [g.shape for g in got] == [(0, 4), (0, 12)] and _CpuRawKernel.launches == before


_OPS = sorted(name for name in SCALAR)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
@pytest.mark.parametrize("name", _OPS)
def test_each_c_expression_computes_the_reference(name, dtype, cpu_cupy):
    cls = op_registry()[name]
    op = cls()
    arity = {"where": 3}.get(name, 2 if issubclass(cls, ew.Binary) else 1)
    if dtype == "bool":
        values = np.array([False, True])
    elif dtype.startswith("int"):
        values = np.array([-7, -2, -1, 0, 1, 3, 7], dtype)
    else:
        values = np.array([-2.5, -0.75, 0.0, 0.5, 1.25, 3.0, np.nan], dtype)
    grids = np.meshgrid(*[values] * min(arity, 2), indexing="ij")
    ins = [g.reshape(-1) for g in grids]
    if name in ("logical_and", "logical_or", "logical_not"):
        ins = [a > 0 for a in ins]
    if name == "where":
        ins = [ins[0] > 0, ins[0], ins[1]]
    types_ = [TensorType((None,), a.dtype) for a in ins]
    try:
        fused = _fused([(op, tuple(range(arity)))], types_, [arity])
    except (TypeError, ValueError) as exc:
        pytest.skip(f"{name} refuses {dtype} when built: {exc}")
    spec = cuda_kernel(fused, types_)
    if name == "pow" and not dtype.startswith("float"):
        # C's pow has floating-point overloads only: the array code runs (NumPy's integer
        # power, which refuses negative exponents)
        assert isinstance(spec, Declined)
        ins[1] = np.abs(ins[1])
    elif name in ("neg", "sign", "sub", "square") and dtype == "bool":
        assert isinstance(spec, Declined)   # the array code: NumPy's error or dtype
    else:
        assert isinstance(spec, CudaKernel)
    with np.errstate(all="ignore"):
        try:
            want = numpy_kernel(fused, _node(types_), np)(*ins)[0]
        except TypeError as exc:             # NumPy refuses it: so does the CuPy backend
            with pytest.raises(type(exc)):
                cupy_fused.cupy_kernel(fused, _node(types_), cpu_cupy)(*ins)
            return
        got = cupy_fused.cupy_kernel(fused, _node(types_), cpu_cupy)(*ins)[0]
    assert got.dtype == want.dtype, name
    if dtype.startswith("float"):
        tol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol,
                                   atol=tol, equal_nan=True, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)
    if nvrtc.available() and isinstance(spec, CudaKernel):
        nvrtc.compile_source(spec.source, "compute_90")


def test_add_n_is_one_c_sum(cpu_cupy):
    t = TensorType((None, 3), "float32")
    op = _fused([(AddN(), (0, 1, 2))], [t, t, t], [3])
    args = _arrays([t] * 3, np.random.default_rng(4))
    got = cupy_fused.cupy_kernel(op, _node([t] * 3), cpu_cupy)(*args)[0]
    np.testing.assert_allclose(got, args[0] + args[1] + args[2], rtol=1e-6)


# --- unknown dims are checked on the host, with the NumPy kernel's error -----------------------
def test_unknown_dims_that_differ_raise_the_numpy_kernels_error(cpu_cupy):
    a = TensorType((None, 4), "float32")
    b = TensorType((None, 4), "float32")
    op = _fused([(ew.Add(), (0, 1)), (ew.Tanh(), (2,))], [a, b], [3])
    node = _node([a, b], "cell/fused")
    x, y = np.ones((3, 4), np.float32), np.ones((1, 4), np.float32)   # 1 is not broadcast
    with pytest.raises(InvalidArgumentError) as want:
        numpy_kernel(op, node, np)(x, y)
    with pytest.raises(InvalidArgumentError) as got:
        cupy_fused.cupy_kernel(op, node, cpu_cupy)(x, y)
    assert str(got.value) == str(want.value)
    assert "unknown at build time" in str(got.value) and "(3, 4) and (1, 4)" in str(got.value)


def test_an_input_that_contradicts_its_static_type_is_refused(cpu_cupy):
    a = TensorType((None, 4), "float32")
    op = _fused([(ew.Tanh(), (0,))], [a], [1])
    with pytest.raises(InvalidArgumentError, match="static type"):
        cupy_fused.cupy_kernel(op, _node([a]), cpu_cupy)(np.ones((3, 5), np.float32))


def test_inputs_of_other_dtypes_compute_what_numpy_computes(cpu_cupy):
    """A float64 array fed to a float32 group is not cast: the NumPy kernel computes in
    float64, and so does the CuPy backend (its array code); float32 runs the CUDA kernel."""
    a = TensorType((None, 4), "float32")
    op = _fused([(ew.Tanh(), (0,)), (ew.Mul(), (1, 0))], [a], [2])
    x = np.linspace(-1, 1, 12).reshape(3, 4) + 1e-9     # not representable in float32
    want = numpy_kernel(op, _node([a]), np)(x)[0]
    before = _CpuRawKernel.launches
    got = cupy_fused.cupy_kernel(op, _node([a]), cpu_cupy)(x)[0]
    assert want.dtype == got.dtype == np.float64 and _CpuRawKernel.launches == before
    np.testing.assert_allclose(got, np.tanh(x) * x, rtol=1e-15)
    got = cupy_fused.cupy_kernel(op, _node([a]), cpu_cupy)(x.astype(np.float32))[0]
    assert got.dtype == np.float32 and _CpuRawKernel.launches == before + 1
    np.testing.assert_allclose(got, np.tanh(x) * x, rtol=1e-6)


def test_outputs_whose_unknown_dims_differ_run_the_array_code(cpu_cupy):
    """Two outputs fed by different inputs, linked only through a [1, 4] value: NumPy gives
    them their own row counts; the kernel's one domain cannot, so the call runs array code."""
    a, b, s = (TensorType((None, 4), "float32"),) * 2 + (TensorType((1, 4), "float32"),)
    op = _fused([(ew.Exp(), (2,)), (ew.Add(), (0, 3)), (ew.Add(), (1, 3))], [a, b, s], [4, 5])
    spec = cuda_kernel(op, [a, b, s])
    assert isinstance(spec, CudaKernel) and spec.agree
    args = [np.ones((3, 4), np.float32), np.ones((2, 4), np.float32),
            np.zeros((1, 4), np.float32)]
    got = cupy_fused.cupy_kernel(op, _node([a, b, s]), cpu_cupy)(*args)
    assert [g.shape for g in got] == [(3, 4), (2, 4)]
    np.testing.assert_allclose(got[1], 2.0)


def test_an_unknown_output_dim_beside_a_static_domain_gives_the_numpy_result(cpu_cupy):
    """The same group with b static [3, 4]: the domain has 3 rows, and the output fed by a
    (rows unknown) must have exactly those, else the array code runs, as NumPy sizes it."""
    a, b, s = (TensorType((None, 4), "float32"), TensorType((3, 4), "float32"),
               TensorType((1, 4), "float32"))
    op = _fused([(ew.Exp(), (2,)), (ew.Add(), (0, 3)), (ew.Add(), (1, 3))], [a, b, s], [4, 5])
    node = _node([a, b, s])
    for rows in (5, 3, 2):
        args = [np.full((rows, 4), rows, np.float32), np.ones((3, 4), np.float32),
                np.zeros((1, 4), np.float32)]
        got = cupy_fused.cupy_kernel(op, node, cpu_cupy)(*args)
        assert [g.shape for g in got] == [(rows, 4), (3, 4)]
        np.testing.assert_array_equal(got[0], rows + 1.0)   # every row written
        np.testing.assert_array_equal(got[1], 2.0)


def test_a_plain_read_needs_the_domains_size_exactly(cpu_cupy):
    """A bound on a read that is not a column block's (offset 0) asks for equality: a larger
    input is refused, not read in part."""
    import dataclasses
    a = TensorType((None, 4), "float32")
    op = _fused([(ew.Tanh(), (0,))], [a], [1])
    spec = cuda_kernel(op, [a])
    exact = dataclasses.replace(spec, domain=(2, 4), bounds=((0, 0, 2, 0, True),))
    block = dataclasses.replace(spec, domain=(2, 4), bounds=((0, 0, 2, 0, False),))

    def mismatch(*_):
        raise AssertionError("no dim check here")
    args = ([(3, 4)], ["float32"], [[4, 1]], mismatch)
    with pytest.raises(InvalidArgumentError, match="axis 0, where the group computes 2"):
        exact.prepare(*args)
    assert block.prepare(*args)[0] == 8
    assert exact.prepare([(2, 4)], ["float32"], [[4, 1]], mismatch)[0] == 8


def test_declined_groups_run_as_array_code(cpu_cupy):
    h = TensorType((None, 4), "float16")
    op = _fused([(ew.Tanh(), (0,))], [h], [1])
    assert isinstance(cuda_kernel(op, [h]), Declined)
    x = np.linspace(-1, 1, 8, dtype=np.float16).reshape(2, 4)
    got = cupy_fused.cupy_kernel(op, _node([h]), cpu_cupy)(x)
    assert not hasattr(cupy_fused.cupy_kernel(op, _node([h]), cpu_cupy), "cuda_kernel")
    np.testing.assert_allclose(got[0], np.tanh(x), rtol=1e-3)
    t = TensorType((None, 4), "float32")   # a join read inside its own group
    op = _fused([(Concat(1), (0, 0)), (ew.Tanh(), (1,))], [t], [2])
    assert isinstance(cuda_kernel(op, [t]), Declined)


def test_sources_hold_no_text_from_the_graph():
    """Names and attributes of a graph never reach the source (a saved graph is data)."""
    g = rg.Graph()
    with g.as_default():
        X = rg.placeholder(rg.float32, [None, None, 3], name="evil_name")
        with rg.variable_scope("scope_with_a_long_name"):
            out, _ = rg.nn.dynamic_rnn(rg.nn.LSTMCell(8), X, dtype=rg.float32)
        loss = rg.reduce_sum(out)
        grads = rg.gradients(loss, rg.global_variables())
    for source in kernel_sources([loss] + grads, {X: None}).values():
        assert "evil" not in source and "scope" not in source and "lstm" not in source.lower()


# --- StepRows keeps device rows on their device -------------------------------------------------
class _DeviceArray:
    """A stand-in for a device array class (as CuPy's): no implicit conversion to NumPy."""

    def __init__(self, shape, dtype=np.float32, _data=None):
        self.a = np.empty(shape, dtype) if _data is None else _data

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)

    def __getitem__(self, key):
        return _DeviceArray(None, _data=self.a[key])

    def __setitem__(self, key, value):
        self.a[key] = value.a if isinstance(value, _DeviceArray) else value

    def reshape(self, *shape):
        return _DeviceArray(None, _data=self.a.reshape(*shape))

    def get(self):
        return self.a.copy()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed")


def test_step_rows_keep_device_rows_on_their_device():
    rng = np.random.default_rng(0)
    counts = [3, 2, 2, 1]
    packed = rng.standard_normal((sum(counts), 5)).astype(np.float32)
    want = np.zeros((4, 3, 5), np.float32)
    start = 0
    for t, n in enumerate(counts):
        want[t, :n] = packed[start:start + n]
        start += n
    host = StepRows(packed, counts, (4, 3, 5))
    np.testing.assert_array_equal(np.asarray(host), want)
    np.testing.assert_array_equal(host.get(), want)
    assert host.size == want.size and not hasattr(host, "__cuda_array_interface__")
    dev = StepRows(_DeviceArray(None, _data=packed), counts, (4, 3, 5))
    full = dev.materialize()
    assert isinstance(full, _DeviceArray) and full.shape == (4, 3, 5)
    np.testing.assert_array_equal(full.a, want)
    np.testing.assert_array_equal(dev.get(), want)
    with pytest.raises(TypeError, match=r"\.get\(\)"):
        np.asarray(dev)
    assert Device().to_host(host).shape == (4, 3, 5)   # a fetch (materialize, then the host)
