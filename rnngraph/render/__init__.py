"""Pictures of graphs: DOT text (a pure function), files laid out by graphviz, an HTML page,
and networkx.

    rg.to_dot(graph, plan=None, fetches=None, max_depth=None, all_steps=False, collapse=False,
              expand=(), ...) -> str
    rg.render(graph, "model.svg", **to_dot_opts) -> path   (.svg .png .pdf .dot .html)
    rg.to_networkx(graph) -> networkx.DiGraph
"""
from .dot import DEFAULT_STEP_PATTERN, MAX_LAYOUT_SIZE, SavedTensorPlan, to_dot
from .html import to_html
from .nx import to_networkx
from .output import FORMATS, format_for, layout, render

__all__ = ["DEFAULT_STEP_PATTERN", "FORMATS", "MAX_LAYOUT_SIZE", "SavedTensorPlan",
           "format_for", "layout", "render", "to_dot", "to_html", "to_networkx"]
