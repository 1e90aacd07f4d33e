"""kernel_sources: the CUDA kernels a graph would run on the GPU, without a GPU or CuPy."""
from __future__ import annotations

from ...ops.fused import Fused
from ...passes.pipeline import enabled_passes, optimize
from ...passes.rewrite import clone
from ...runtime.fetches import flatten
from ...runtime.session import check_feed_dict, check_fetch_values, feed_key
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
    check_fetch_values(flat, root, f"{flat[0].name}'s (the first fetch)")   # Session's checks
    if feed_dict is not None:
        check_feed_dict(feed_dict)
    fed = [feed_key(root, key) for key in feed_dict or {}]
    enabled_passes(passes)   # unknown pass names: the Session's error
    if passes:   # as Session(device="gpu") sets them: the packed-weight GEMM is CPU code
        passes = dict(passes) if isinstance(passes, dict) else {}
        passes["pack_weights"] = False
    graph, vmap = clone(root, flat + fed)
    optimize(graph, [vmap[v] for v in flat + fed], passes, fed=len(fed))
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
