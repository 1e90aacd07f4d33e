"""Write a graph's diagram to a file: DOT text from `to_dot`, laid out by graphviz's `dot`
(run as a subprocess with a time limit), or an HTML page (see `html.py`)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import RenderError
from .dot import to_dot

FORMATS = ("svg", "png", "pdf", "dot", "html")
_SUFFIX_FORMAT = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot",
                  ".html": "html", ".htm": "html"}
DOT_TIMEOUT_S = 60.0  # `dot` is stopped past this (the size guard keeps defaults near 10 s)


def format_for(path, format: str | None = None) -> str:
    """The format a diagram is written in: `format` if given, else the file's suffix (.svg,
    .png, .pdf, .dot/.gv, .html); no suffix means svg. An unknown suffix or format, or one that
    contradicts the suffix, is a ValueError naming both (no file is written)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if suffix and suffix not in _SUFFIX_FORMAT:
        raise ValueError(f"cannot tell the format from the suffix of {str(path)!r}: use one of "
                         f"{', '.join(sorted(_SUFFIX_FORMAT))}")
    by_suffix = _SUFFIX_FORMAT.get(suffix)
    if format is not None and by_suffix is not None and by_suffix != format:
        raise ValueError(f"format={format!r} contradicts the suffix of {str(path)!r} "
                         f"({by_suffix}); name the file .{format} or drop the format")
    return format or by_suffix or "svg"


def render(graph_or_values, path, format: str | None = None, *,
           timeout: float | None = DOT_TIMEOUT_S, **opts) -> str:
    """Draw a Graph (or what some Values depend on) to `path`; return the path written.

    The format ("svg", "png", "pdf", "dot" for the DOT text itself, "html" for a page with
    pan/zoom and click-to-expand scopes) follows the file's suffix (see `format_for`); a path
    without a suffix gets ".svg" or ".<format>". `timeout` (seconds, None for none) bounds
    graphviz's layout: past it `RenderError`. `opts` go to `to_dot`: plan, fetches, max_depth,
    all_steps, max_steps, step_pattern, rankdir, edge_labels, title, collapse, expand,
    max_size, legend.
    """
    path = Path(path)
    fmt = format_for(path, format)
    if not path.suffix:
        path = path.with_suffix("." + fmt)
    if fmt == "html":
        from .html import to_html  # html.py imports layout() from here: a cycle at the top
        page = to_html(graph_or_values, timeout=timeout, **opts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        return str(path)
    text = to_dot(graph_or_values, **opts)  # build first: a bad option fails before any I/O
    data = text.encode() if fmt == "dot" else layout(text, fmt, timeout)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def layout(text: str, fmt: str = "svg", timeout: float | None = DOT_TIMEOUT_S) -> bytes:
    """DOT text laid out by graphviz's `dot` into svg, png or pdf bytes."""
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError("graphviz's `dot` program was not found on PATH: install graphviz "
                          "(e.g. `apt install graphviz`), or render with format='dot'")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=text.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"graphviz's `dot` did not finish within {timeout:g} s: draw less "
                          "(max_depth=1 / --max-depth 1, or fold the middle steps of a static "
                          "unroll: all_steps=False)") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise RenderError(f"graphviz's `dot` failed (exit {done.returncode}): "
                          f"{err[-1] if err else 'no message'}")
    return done.stdout
