"""Write a graph's diagram to a file: DOT text from `to_dot`, laid out by graphviz's `dot`."""
from __future__ import annotations

from pathlib import Path

from .dot import to_dot

FORMATS = ("svg", "png", "pdf", "dot")
_SUFFIX_FORMAT = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}


def render(graph_or_values, path, format: str | None = None, **opts) -> str:
    """Draw a Graph (or what some Values depend on) to `path`; return the path written.

    `format` is "svg", "png", "pdf" or "dot" (the DOT text itself); by default it follows the
    file's suffix, else "svg" (and the suffix is added when `path` has none). `opts` go to
    `to_dot`: plan, fetches, max_depth, all_steps, max_steps, step_pattern, rankdir,
    edge_labels, title.
    """
    path = Path(path)
    fmt = format or _SUFFIX_FORMAT.get(path.suffix.lower(), "svg")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not path.suffix:
        path = path.with_suffix("." + fmt)
    text = to_dot(graph_or_values, **opts)  # build first: a bad option fails before any I/O
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(text)
    else:
        path.write_bytes(_layout(text, fmt))
    return str(path)


def _layout(text: str, fmt: str) -> bytes:
    import graphviz  # optional: DOT text and networkx export work without it

    try:
        return graphviz.Source(text).pipe(format=fmt, engine="dot")
    except graphviz.ExecutableNotFound:
        raise RuntimeError("graphviz's `dot` program was not found on PATH: install graphviz "
                           "(e.g. `apt install graphviz`), or render with format='dot'") from None
