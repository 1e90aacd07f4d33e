"""Pictures of graphs: DOT text (a pure function), files laid out by graphviz, and networkx.

    rg.to_dot(graph, plan=None, fetches=None, max_depth=None, all_steps=False, ...) -> str
    rg.render(graph, "/tmp/model.svg", format="svg"|"png"|"pdf"|"dot", **to_dot_opts) -> path
    rg.to_networkx(graph) -> networkx.DiGraph
"""
from .dot import DEFAULT_STEP_PATTERN, SavedTensorPlan, to_dot
from .nx import to_networkx
from .output import render

__all__ = ["DEFAULT_STEP_PATTERN", "SavedTensorPlan", "render", "to_dot", "to_networkx"]
