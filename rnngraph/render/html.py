"""A graph as one self-contained HTML page: the collapsed diagram (SVG laid out by graphviz)
with pan and zoom, where clicking a folded scope's box shows the diagram with that scope open.

Every view is laid out ahead of time (a browser cannot run graphviz): the collapsed one, and one
per folded scope with that scope (and its ancestors) open, up to `max_views`. The page needs
no network: the SVGs and the script are inside it. Scope names reach the page only as JSON
strings and as SVG text escaped by graphviz; the script never evaluates text from the graph.

In the page: drag to pan, the wheel (or + / -) to zoom, 0 to fit; click a box drawn with a
3-D edge to open its scope; "back" returns to the view before. `#expand=SCOPE` in the address
opens SCOPE when the page loads (as a click on its box would).
"""
from __future__ import annotations

import html as _html
import json
import re

from ..errors import DiagramTooLargeError, RenderError
from .dot import to_dot
from .output import DOT_TIMEOUT_S, layout

MAX_VIEWS = 40
_BOX_ID = re.compile(r'<g id="scope:([^"]*)" class="node"')


def to_html(graph_or_values, *, title: str | None = None, max_views: int = MAX_VIEWS,
            timeout: float | None = DOT_TIMEOUT_S, **opts) -> str:
    """The page's text. `opts` go to `to_dot` (`collapse` defaults to True here; with
    `max_depth` given, only that one view is drawn). Views past `max_views`, or too large for
    the size guard, or that graphviz fails to lay out, are left out: their boxes stay closed
    and say so when clicked."""
    if max_views < 1:
        raise ValueError(f"max_views must be >= 1, got {max_views}")
    opts.setdefault("collapse", True)
    base_expand = opts.pop("expand", ())
    base_expand = (base_expand,) if isinstance(base_expand, str) else tuple(base_expand or ())

    def view(expand) -> str:
        text = to_dot(graph_or_values, title=title, expand=expand, **opts)
        svg = layout(text, "svg", timeout).decode("utf-8")
        return svg[svg.index("<svg"):]  # no XML prolog or DOCTYPE inside HTML

    views = {"": view(base_expand)}
    queue = _boxes(views[""])
    skipped, failed = [], {}
    while queue:
        scope = queue.pop(0)
        if scope in views or scope in skipped:
            continue
        if len(views) >= max_views or opts.get("max_depth") is not None:
            skipped.append(scope)
            continue
        try:
            views[scope] = view(base_expand + (scope,))
        except DiagramTooLargeError:
            skipped.append(scope)
            continue
        except RenderError as e:   # (graphviz may fail on one nesting: the rest still opens)
            skipped.append(scope)
            failed[scope] = str(e).splitlines()[0]
            continue
        queue += [s for s in _boxes(views[scope]) if s not in views]
    return _page(title or "rnngraph diagram", views, skipped, failed)


def _boxes(svg: str) -> list[str]:
    """Scope paths of the folded boxes in an SVG (graphviz writes the DOT `id` on the node)."""
    return [_html.unescape(m) for m in _BOX_ID.findall(svg)]


def _json_for_script(obj) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return json.dumps(obj).replace("<", "\\u003c")  # still JSON; no tag can start


def _page(title: str, views: dict, skipped: list, failed: dict) -> str:
    data = _json_for_script({"views": views, "skipped": skipped, "failed": failed})
    return _TEMPLATE.replace("{{TITLE}}", _html.escape(title)).replace("{{DATA}}", data) \
        .replace("{{SCRIPT}}", _SCRIPT)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{{TITLE}}</title>
<style>
  html, body { margin: 0; height: 100%; font-family: "DejaVu Sans", sans-serif; }
  #bar { position: fixed; top: 0; left: 0; right: 0; height: 34px; padding: 0 10px;
         display: flex; gap: 10px; align-items: center; background: #f4f6f9;
         border-bottom: 1px solid #d0d6de; font-size: 13px; color: #39424e; z-index: 1; }
  #bar button { font: inherit; padding: 2px 10px; }
  #where { font-weight: bold; }
  #note { color: #8a5a00; }
  #stage { position: absolute; top: 35px; left: 0; right: 0; bottom: 0; overflow: hidden;
           cursor: grab; background: white; }
  #stage.dragging { cursor: grabbing; }
  #stage svg { width: 100%; height: 100%; display: block; }
  g.node[id^="scope:"] { cursor: pointer; }
  g.node[id^="scope:"]:hover polygon { stroke-width: 2.5; }
</style>
</head>
<body>
<div id="bar">
  <button id="back" disabled>back</button>
  <button id="fit">fit</button>
  <span>view: <span id="where">collapsed</span></span>
  <span id="note"></span>
  <span style="margin-left:auto">drag: pan, wheel: zoom, click a 3-D box: open its scope</span>
</div>
<div id="stage"></div>
<script id="data" type="application/json">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body>
</html>
"""

_SCRIPT = r"""
"use strict";
window.addEventListener("error", function (e) {
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + "\n";
});
(function () {
  var data = JSON.parse(document.getElementById("data").textContent);
  var stage = document.getElementById("stage");
  var history = [], current = null, box = null, full = null;

  function show(scope, remember) {
    if (!(scope in data.views)) {
      document.getElementById("note").textContent = (scope in data.failed) ?
        "'" + scope + "' could not be laid out here (" + data.failed[scope] + ")" :
        "'" + scope + "' is too large to open here: render it with --expand " + scope;
      return false;
    }
    if (remember && current !== null) { history.push(current); }
    current = scope;
    var parsed = new DOMParser().parseFromString(data.views[scope], "image/svg+xml");
    var svg = document.importNode(parsed.documentElement, true);
    stage.replaceChildren(svg);
    full = svg.viewBox.baseVal;
    full = {x: full.x, y: full.y, width: full.width, height: full.height};
    svg.removeAttribute("width"); svg.removeAttribute("height");
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    fit();
    svg.querySelectorAll('g.node[id^="scope:"]').forEach(function (g) {
      g.addEventListener("click", function (ev) {
        if (stage.moved) { return; }
        ev.stopPropagation();
        show(g.id.slice("scope:".length), true);
      });
    });
    document.getElementById("where").textContent = scope === "" ? "collapsed" : scope + " open";
    document.getElementById("note").textContent = "";
    document.getElementById("back").disabled = history.length === 0;
    document.body.dataset.view = scope;
    return true;
  }
  function svgEl() { return stage.querySelector("svg"); }
  function apply() {
    svgEl().setAttribute("viewBox", [box.x, box.y, box.width, box.height].join(" "));
  }
  function fit() { box = {x: full.x, y: full.y, width: full.width, height: full.height}; apply(); }
  function zoom(factor, cx, cy) {
    var r = stage.getBoundingClientRect();
    var s = Math.max(box.width / r.width, box.height / r.height);
    var px = box.x + (cx - r.left) * s - (r.width * s - box.width) / 2;
    var py = box.y + (cy - r.top) * s - (r.height * s - box.height) / 2;
    box = {x: px - (px - box.x) * factor, y: py - (py - box.y) * factor,
           width: box.width * factor, height: box.height * factor};
    apply();
  }
  stage.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, ev.clientX, ev.clientY);
  }, {passive: false});
  var drag = null;
  stage.addEventListener("mousedown", function (ev) {
    drag = {x: ev.clientX, y: ev.clientY, box: box}; stage.moved = false;
    stage.classList.add("dragging");
  });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) { return; }
    var r = stage.getBoundingClientRect();
    var s = Math.max(drag.box.width / r.width, drag.box.height / r.height);
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { stage.moved = true; }
    box = {x: drag.box.x - dx * s, y: drag.box.y - dy * s,
           width: drag.box.width, height: drag.box.height};
    apply();
  });
  window.addEventListener("mouseup", function () {
    drag = null; stage.classList.remove("dragging");
    setTimeout(function () { stage.moved = false; }, 0);
  });
  window.addEventListener("keydown", function (ev) {
    var r = stage.getBoundingClientRect(), cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    if (ev.key === "+" || ev.key === "=") { zoom(1 / 1.25, cx, cy); }
    else if (ev.key === "-") { zoom(1.25, cx, cy); }
    else if (ev.key === "0") { fit(); }
  });
  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("back").addEventListener("click", function () {
    if (history.length) { show(history.pop(), false); }
  });
  show("", false);
  var m = /^#expand=(.+)$/.exec(window.location.hash);
  if (m) {
    var want = decodeURIComponent(m[1]);
    var target = Array.prototype.find.call(
      svgEl().querySelectorAll('g.node[id^="scope:"]'),
      function (g) { return g.id === "scope:" + want; });
    if (target) {
      target.dispatchEvent(new MouseEvent("click", {bubbles: true}));
    } else {
      show(want, true);
    }
  }
  document.body.dataset.ready = "1";
})();
"""
