"""kernel_sources: the CUDA kernels a graph would run on the GPU, without a GPU or CuPy."""
from __future__ import annotations

from ...ir.value import Value
from ...ops.fused import Fused
from ...passes.pipeline import enabled_passes, optimize
from ...passes.rewrite import clone
from ...runtime.fetches import flatten
from .cuda_codegen import CudaKernel, cuda_kernel


def kernel_sources(fetches, feed_dict=None, passes=True) -> dict:
    """{kernel name: CUDA source} of the fused kernels a GPU session would run for `fetches`.

    The graph is compiled as `Session(device="gpu").run(fetches, feed_dict)` compiles it (the
    same passes; a GPU session never packs weights), and each Fused node's kernel is generated
    as the CuPy backend generates it: the names are the ones CuPy caches them under, the same
    in every process. Nothing runs, and neither a GPU nor CuPy is needed: the sources can be
    read, or compiled anywhere with NVRTC (rnngraph.backends.cupy.nvrtc).

    Args:
      fetches: a Value or nested list/tuple/dict of Values, as for Session.run.
      feed_dict: the values that will be fed, {placeholder or its name: anything}; only the
        keys matter (what is fed changes what is computed).
      passes: the Session's `passes` argument (True: all).

    Groups the generator declines (float16 ones, see backends/cupy/fused.py) run as array
    code and have no entry. A session with a memory_budget may compile with other passes
    (runtime/planning.py: without whole-sequence stacks); pass those as `passes` to see the
    kernels of that program.
    """
    sources: dict = {}
    for node in fused_nodes(compiled_graph(fetches, feed_dict, passes)):
        spec = cuda_kernel(node.op, [v.type for v in node.inputs])
        if isinstance(spec, CudaKernel):
            sources[spec.name] = spec.source
    return sources


def compiled_graph(fetches, feed_dict=None, passes=True):
    """The graph a GPU session compiles for `fetches` and the keys of `feed_dict`."""
    flat, _ = flatten(fetches)
    if not flat:
        raise ValueError("kernel_sources needs at least one Value to fetch")
    root = flat[0].graph.root
    for v in flat:
        if v.graph.root is not root:
            raise ValueError(f"cannot fetch {v.name} (built at {v.node.location}): the fetches "
                             "belong to different graphs")
        if v.graph is not root:
            raise ValueError(f"cannot fetch {v.name}: it lives inside a loop body; fetch the "
                             "loop's outputs instead")
    if feed_dict is not None and not isinstance(feed_dict, dict):
        raise TypeError(f"feed_dict must be a dict {{placeholder: value}}, got "
                        f"{type(feed_dict).__name__}")
    fed = []
    for key in feed_dict or {}:
        if isinstance(key, str):
            try:
                key = root.get_value(key)
            except (KeyError, ValueError, IndexError):
                raise ValueError(f"feed_dict key {key!r} names no value in this graph") from None
        if not isinstance(key, Value):
            raise TypeError(f"feed_dict keys must be placeholders (Values) or their names, got "
                            f"{type(key).__name__}: {key!r}")
        if key.graph is not root:
            raise ValueError(f"cannot feed {key.name}: it belongs to another graph")
        fed.append(key)
    enabled_passes(passes)   # unknown pass names: the Session's error
    if passes:   # as Session(device="gpu") sets them: the packed-weight GEMM is CPU code
        passes = dict(passes) if isinstance(passes, dict) else {}
        passes["pack_weights"] = False
    graph, vmap = clone(root, flat + fed)
    optimize(graph, [vmap[v] for v in flat + fed], passes)
    return graph


def fused_nodes(graph) -> list:
    """The Fused nodes of a compiled graph, loop bodies included, in schedule order."""
    found = []
    for node in graph.nodes:
        if isinstance(node.op, Fused):
            found.append(node)
        for body in node.op.subgraphs():
            found += fused_nodes(body)
    return found
