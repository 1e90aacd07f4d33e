"""Graph (+ optional memory plan) -> DOT text. A pure function: no global state, no I/O.

What the picture shows:

- **Name scopes** are nested clusters. With `max_depth=d`, a scope more than d levels deep
  (`rnn` is depth 1, `rnn/layer_0` depth 2) folds into one box labelled with the scope name and
  its node count; edges into and out of it are merged.
- **Gradient nodes** (`node.is_gradient`, and everything inside a gradient loop) are coloured
  apart and enclosed in one "backward" cluster.
- **A loop node** is a cluster holding its body: the params it feeds (carried, invariant,
  sequence, and the step `t` when used), the body's nodes, small "port" nodes for the loop's
  outputs that are used, and the carried-state back edge (body result -> carried param), dashed
  with `constraint=false` so it does not distort the layout.
- **Static unrolls** are recognised from scope names: sibling scopes whose last component
  matches `step_pattern` (default `<name>_<k>`, e.g. `step_3` or `basic_rnn_cell_3`; a sibling
  named plain `<name>` joins as step 0, TF-style) form a step group when one parent holds more
  than one of them. Each step is a cluster, edges between steps (the state) are drawn bold red,
  and with more than `max_steps` steps (12; 6 when collapsed) the middle ones fold into one
  "... k steps ..." box unless `all_steps=True`. The steps form a **timeline**: laid out left
  to right in index order (rankdir LR by default), the gradient's steps level with the forward
  steps they differentiate (see `_Builder._timeline_order`). The weights the steps share are
  drawn once, in a cluster of their own above the timeline, each step reading them through a
  small reference node (a dashed cylinder with an arrow up); the inputs hang below the
  timeline, their reads elsewhere (the backward steps) drawn as references with an arrow down,
  and the inputs of the folded middle steps fold into one box with them (see
  `_Builder._references`). Steps are not looked for inside a step or a loop body (time steps
  do not nest; a loop body is one step), nor among scopes that hold only variables (a
  MultiRNNCell's `cell_0`, `cell_1` weights). Caveat: other numbered sibling scopes holding
  computation match too (`dense_1`, `dense_2`); pass
  `step_pattern=r"^(?P<base>step)_(?P<step>\\d+)$"` to be strict or `None` to turn detection off.
- **A plan** (anything with `placement_of(value)` and `bytes_of(value)`, see `SavedTensorPlan`)
  colours the loops' saved tensors (the "residual" outputs) by placement and labels their size:
  kept on the device neutral grey, offloaded to host blue, recomputed green. Saved outputs say
  "kept for the backward pass" with or without a plan.
- **Collapsed** (`collapse=True`): one box per scope below the top level with its node count,
  except loops, static steps and the scopes in `expand`; a box carries the DOT id
  `scope:<path>`. A **legend** names every colour drawn (`legend=False` leaves it out).
- **Size guard**: see `MAX_LAYOUT_SIZE` / `MAX_TIMELINE_STEPS` and `to_dot`.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from ..errors import DiagramTooLargeError
from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.value import Value

DEFAULT_STEP_PATTERN = r"^(?P<base>.+?)_(?P<step>\d+)$"
HEAD_STEPS = TAIL_STEPS = 2  # steps kept either side of the "... k steps ..." box
MAX_STEPS = 12               # more steps than this fold their middle (unless all_steps)
COLLAPSED_MAX_STEPS = 6      # ... in the collapsed view
# Nodes + edges of the largest picture drawn by default: graphviz's `dot` lays out about this
# much in under 10 s on the 2-core build machine (measured: see docs/performance.md).
MAX_LAYOUT_SIZE = 1200
# Steps of one static unroll drawn side by side: a timeline's layout time grows much faster
# than its node and edge count (docs/performance.md has the measurements).
MAX_TIMELINE_STEPS = 12


@runtime_checkable
class SavedTensorPlan(Protocol):
    """What the renderer asks of a memory plan about a saved tensor (a loop residual output)."""

    def placement_of(self, value: Value) -> str | None:
        """'device', 'host', 'recompute', or None when the plan does not cover the value."""

    def bytes_of(self, value: Value) -> int | None:
        """Size in bytes the plan assumes for the value, or None when unknown."""


# --- palette: soft fills keep small text readable; borders carry the hue ----------------------
# A font graphviz measures (through fontconfig) and that SVG viewers have: Debian's
# fonts-dejavu-core. Titles and labels are then as wide in the picture as dot planned.
_FONT = "DejaVu Sans"
_STYLE = {  # kind -> (fill, border)
    "op": ("#eaf1fb", "#5b7fb3"),
    "variable": ("#fff4d1", "#b8860b"),
    "placeholder": ("#e3f4e5", "#3f8f55"),
    "constant": ("#f4f4f4", "#a8a8a8"),
    "param": ("#ffffff", "#7d8a99"),
    "port": ("#eef0f4", "#7d8a99"),
    "grad": ("#fdebe0", "#c96a32"),
    "fold": ("#eef0f3", "#6c7a89"),
    "ref": ("#fffdf3", "#b8860b"),   # a shared weight or an input read here, drawn once elsewhere
}
# device is the normal case: a neutral grey; host and recompute are the two that stand out
_PLACEMENT = {"device": ("#e6e8ec", "#6b7280"), "host": ("#c9e0f5", "#2e6da4"),
              "recompute": ("#d4efd0", "#3c8d40")}
_PLACEMENT_TEXT = {"device": "kept on the device", "host": "offloaded to host memory",
                   "recompute": "recomputed"}
_LEGEND = [("forward op", "op"), ("gradient op", "grad"), ("variable (weights)", "variable"),
           ("placeholder (input)", "placeholder"), ("constant", "constant"),
           ("folded scope / steps", "fold"), ("loop input or output", "port"),
           ("a weight (\u2191 drawn above) or input (\u2193 below) read here", "ref")]
_CLUSTER = {  # kind -> (fill, border, style)
    "scope": ("#fbfbfc", "#b8c0cc", "rounded,dashed,filled"),
    "step": ("#f6f8fb", "#8fa3bd", "rounded,filled"),
    "loop": ("#f2f6fd", "#4a6fa5", "rounded,bold,filled"),
    "grad_loop": ("#fff6f0", "#c96a32", "rounded,bold,filled"),
    "gradients": ("#fffaf6", "#e0a47c", "rounded,filled"),
    "legend": ("#ffffff", "#cccccc", "rounded"),
}
_CLUSTER_TEXT = {"scope": "#5f6b7a", "step": "#4a5d78", "gradients": "#b35a22",
                 "legend": "#5f6b7a"}  # faint borders, readable labels
_STATE, _FETCH, _EDGE, _GRAD_EDGE, _MUTED = "#c0392b", "#7b2cbf", "#8795a5", "#d39b78", "#6b7280"
_EDGE_STYLE = {
    "data": {},
    "state": {"color": _STATE, "penwidth": "2.2", "fontcolor": _STATE},
    "back": {"color": _STATE, "style": "dashed", "constraint": "false", "penwidth": "1.4",
             "fontcolor": _STATE},
    "port": {"style": "dotted", "arrowhead": "none"},
}


class _Html(str):
    """An HTML-like label: written between <...> instead of quotes."""


@dataclass(frozen=True)
class _Options:
    plan: object
    fetches: tuple
    max_depth: int | None
    all_steps: bool
    max_steps: int
    step_re: re.Pattern | None
    edge_labels: bool
    collapse: bool = False
    expand: frozenset = frozenset()   # scopes opened in a collapsed view (and their ancestors)


@dataclass(frozen=True)
class _Ctx:
    """Where the walk is: inside the backward part, which static step, inside a loop body."""
    grad: bool = False
    step: tuple | None = None
    in_body: bool = False


@dataclass
class _Scope:
    name: str
    path: str
    depth: int
    nodes: list = field(default_factory=list)
    children: dict = field(default_factory=dict)
    holds_steps: bool | None = None   # a static unroll's steps somewhere below (memo)

    def all_nodes(self):
        yield from self.nodes
        for c in self.children.values():
            yield from c.all_nodes()


def to_dot(graph_or_values, *, plan=None, fetches=None, max_depth: int | None = None,
           all_steps: bool = False, max_steps: int | None = None,
           step_pattern: str | None = DEFAULT_STEP_PATTERN, rankdir: str | None = None,
           edge_labels: bool = True, title: str | None = None, collapse: bool = False,
           expand=(), max_size: int | None = MAX_LAYOUT_SIZE, legend: bool = True) -> str:
    """DOT text for a Graph, or for the part of a graph that some Values depend on.

    `fetches` (Values) are highlighted; when Values are given instead of a graph they are the
    default fetches. `plan` is a `SavedTensorPlan`. `collapse=True` draws one box per name
    scope below the top level (with its node count), except the scopes named in `expand` (a
    scope path or a list of them; their ancestors open too) and the steps of a static unroll;
    `max_depth` overrides it. `rankdir` defaults to LR when a static unroll is drawn (a
    timeline) and TB otherwise. `max_size` bounds nodes + edges (see `MAX_LAYOUT_SIZE`): a
    larger picture is drawn collapsed when no view was asked for (`max_depth`, `all_steps`,
    `collapse` unset), else refused with `DiagramTooLargeError`; None turns the guard off.
    See the module docstring for the layout.
    """
    if rankdir not in (None, "TB", "LR", "BT", "RL"):
        raise ValueError(f"rankdir must be TB, LR, BT or RL, got {rankdir!r}")
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"max_depth must be >= 0 or None, got {max_depth}")
    if plan is not None and not isinstance(plan, SavedTensorPlan):
        raise TypeError(f"plan must have placement_of(value) and bytes_of(value), got "
                        f"{type(plan).__name__}")
    step_re = re.compile(step_pattern) if step_pattern else None
    if step_re is not None and "step" not in step_re.groupindex:
        raise ValueError("step_pattern needs a named group (?P<step>\\d+) for the step number "
                         "(and optionally (?P<base>...) naming the group of steps)")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
    expand = frozenset([expand] if isinstance(expand, str) else (expand or ()))
    for e in expand:
        if not isinstance(e, str) or not e.strip("/"):
            raise ValueError(f"expand takes scope paths such as 'gradients/rnn', got {e!r}")
    expand = frozenset(e.strip("/") for e in expand)
    graph, nodes, wanted = _select(graph_or_values)
    fetches = wanted if fetches is None else _values(fetches)
    if max_steps is None:  # the collapsed view is an overview: fewer steps before folding
        max_steps = COLLAPSED_MAX_STEPS if collapse and max_depth is None else MAX_STEPS
    if max_steps < HEAD_STEPS + TAIL_STEPS + 1:
        raise ValueError(f"max_steps must be >= {HEAD_STEPS + TAIL_STEPS + 1}, got {max_steps}")
    opts = _Options(plan, tuple(fetches), max_depth, all_steps, max_steps, step_re, edge_labels,
                    collapse, expand)
    builder = _Builder(opts, legend)
    text = builder.build(graph, nodes, rankdir, title)
    size = builder.size()

    def fits(b: _Builder) -> bool:
        return b.size() <= max_size and b.longest_timeline() <= MAX_TIMELINE_STEPS

    if max_size is None or fits(builder):
        return text
    chosen = [w for w, on in (("max_depth", max_depth is not None), ("all_steps", all_steps),
                              ("collapse", collapse)) if on]
    if not chosen:  # nobody asked for this view: fold it and say so
        folded = _Builder(replace(opts, collapse=True, max_steps=min(max_steps,
                                                                      COLLAPSED_MAX_STEPS)),
                          legend)
        note = "too large to draw whole: scopes folded (expand= / --expand SCOPE opens one)"
        text = folded.build(graph, nodes, rankdir, f"{title} - {note}" if title else note)
        if fits(folded):
            return text
        builder, size = folded, folded.size()
    steps = builder.longest_timeline()
    what = (f"{size} nodes and edges" if size > max_size else
            f"a static unroll of {steps} steps drawn one by one (at most {MAX_TIMELINE_STEPS})")
    raise DiagramTooLargeError(
        f"the diagram has {what}, more than graphviz lays out in about 10 s "
        f"(max_size={max_size}); draw less: max_depth=1 (--max-depth 1), fold the middle "
        f"steps of a static unroll (all_steps=False, no --all-steps), expand fewer scopes, "
        f"or pass max_size=None to lay it out anyway")


# --- what to draw -------------------------------------------------------------------------------
def _values(x) -> list[Value]:
    vals = [x] if isinstance(x, Value) else list(x)
    for v in vals:
        if not isinstance(v, Value):
            raise TypeError(f"expected Values, got {type(v).__name__}: {v!r}")
    return vals


def _select(graph_or_values) -> tuple[Graph, list[Node], list[Value]]:
    """The top-level graph, the nodes to draw (creation order), and the Values asked for."""
    if isinstance(graph_or_values, Graph):
        return graph_or_values, list(graph_or_values.nodes), []
    values = _values(graph_or_values)
    if not values:
        raise ValueError("nothing to draw: give a Graph or at least one Value")
    tops = [_top_node(v.node) for v in values]
    graph = tops[0].graph
    keep, stack = set(), list(tops)
    while stack:  # everything the asked-for values depend on
        n = stack.pop()
        if n not in keep:
            keep.add(n)
            stack.extend(v.node for v in n.inputs)
    return graph, [n for n in graph.nodes if n in keep], values


def _top_node(node: Node) -> Node:
    """The node of the outermost graph that holds `node` (itself, or a loop around it)."""
    while node.graph.parent is not None:
        body = node.graph
        node = next(n for n in body.parent.nodes if body in n.op.subgraphs())
    return node


def _scope_tree(nodes, strip: str, depth0: int) -> _Scope:
    """Nodes filed by the scope part of their names (after removing the prefix `strip`)."""
    root = _Scope("", strip.rstrip("/"), depth0)
    for n in nodes:
        rel = n.name[len(strip):] if strip and n.name.startswith(strip) else n.name
        s = root
        for comp in rel.split("/")[:-1]:
            if comp not in s.children:
                s.children[comp] = _Scope(comp, f"{s.path}/{comp}" if s.path else comp, s.depth + 1)
            s = s.children[comp]
        s.nodes.append(n)
    return root


def _step_groups(children: list[_Scope], step_re: re.Pattern) -> dict[str, list]:
    """base name -> [(k, scope)] sorted by k, for sibling scopes that look like time steps."""
    found: dict[str, list] = {}
    for c in children:
        m = step_re.match(c.name)
        if m:
            found.setdefault(m.groupdict().get("base") or "", []).append((int(m.group("step")), c))
    by_name = {c.name: c for c in children}
    for base, steps in found.items():
        if base in by_name and all(k != 0 for k, _ in steps):
            steps.append((0, by_name[base]))  # TF names step 0 `cell`, then `cell_1`, `cell_2`
    return {b: sorted(s, key=lambda kc: kc[0]) for b, s in found.items()
            if len(s) > 1 and not all(_only_variables(c) for _, c in s)}


def _only_variables(s: _Scope) -> bool:
    """Scopes holding just weights (a MultiRNNCell's `cell_0`, `cell_1`...) are not steps."""
    return all(n.op.name == "variable" for n in s.all_nodes())


def _with_bodies(nodes):
    """The nodes and, recursively, those of their loop bodies."""
    for n in nodes:
        yield n
        for sub in n.op.subgraphs():
            yield from _with_bodies(sub.nodes)


# --- labels -------------------------------------------------------------------------------------
def _esc(s) -> str:
    return html.escape(str(s), quote=False)


def _tail(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _title(text: str) -> str:
    """A cluster title: one run of one font, so SVG writes it as one text element (titles made
    of a bold and a plain run were placed apart by graphviz's estimate and ran together)."""
    return f"<B>{_esc(text)}</B>"


def _scope_label(name: str, ctx) -> str:
    """A scope's title. The gradient loop names the forward ops it redoes each step (those not
    depending on the carried state) `recompute`; that is the planner's word for a placement,
    so the picture says what they are instead."""
    if name == "recompute" and ctx.grad and ctx.in_body:
        return "forward ops redone each step"
    return name


def _small(text: str, color: str = _MUTED, size: int = 8) -> str:
    return f'<FONT POINT-SIZE="{size}" COLOR="{color}">{_esc(text)}</FONT>'


def _out_type(node: Node) -> str:
    return str(node.outputs[0].type) if len(node.outputs) == 1 else f"{len(node.outputs)} outputs"


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _node_look(node: Node, grad: bool) -> dict:
    """Shape, colours and label of an ordinary IR node."""
    kind = node.op.name
    tail, typ = _tail(node.name), _out_type(node)
    if kind == "variable":
        shape, label = "cylinder", f"<B>{_esc(tail)}</B><BR/>{_small(typ)}"
    elif kind == "placeholder":
        shape, label = "invhouse", f"<B>{_esc(tail)}</B><BR/>{_small(typ)}"
    elif kind == "constant":
        value = node.op.value
        shown = str(value.reshape(-1)[0]) if value.size == 1 else typ
        return {"shape": "box", "style": "rounded,filled", "fontsize": "7", "height": "0.2",
                "margin": "0.04,0.02", "fillcolor": _STYLE["constant"][0],
                "color": _STYLE["constant"][1], "fontcolor": _MUTED,
                "label": _Html(_esc(shown))}
    else:
        shape, label = "box", f"<B>{_esc(kind)}</B><BR/>{_small(tail)}<BR/>{_small(typ, '#1f4e79')}"
        kind = "op"
    fill, border = _STYLE["grad" if grad and kind == "op" else kind]
    return {"shape": shape, "style": "rounded,filled" if shape == "box" else "filled",
            "fillcolor": fill, "color": border, "label": _Html(label)}


# --- the builder --------------------------------------------------------------------------------
class _Builder:
    """One rendering: places every IR node (drawn, or folded into a box), then draws edges."""

    def __init__(self, opts: _Options, legend: bool = True):
        self.o = opts
        self.want_legend = legend
        self.folds: dict[str, str] = {}       # node id of a folded scope's box -> scope path
        self._backward: set[str] = set()      # step groups whose state runs against time
        self.lines: list = []                 # str, or (indent, node id) rendered at the end
        self.attrs: dict[str, dict] = {}      # node id -> attributes (later passes restyle)
        self.vis: dict[Node, str] = {}        # IR node -> id of what shows it (itself or a box)
        self.members: list[Node] = []         # every placed IR node, for the edge pass
        self.loops: set[Node] = set()         # loops drawn as clusters (edges go to their ports)
        self.ports: dict[Value, str] = {}     # loop output -> its port node
        self.extra_ports: dict[tuple, str] = {}  # (loop, 'trip'|'cond') -> port node
        self.step: dict[str, tuple] = {}      # node id -> (step group, position): edges across
        self.timelines: dict[str, int] = {}   # step group -> positions drawn    are the state
        self.grad_ids: set[str] = set()
        self.edges: dict[tuple, list] = {}    # (src, dst, kind) -> values (merged edges)
        self._consumed: dict[int, set] = {}
        self._ids = 0
        self._clusters: set[str] = set()
        self._top: set[str] = set()           # forward nodes drawn outside every cluster
        self._refs_before: dict[str, list] = {}  # node id -> references drawn just before it
        self._inputs: dict[str, tuple] = {}   # input id -> (timeline, first position it feeds)
        self._ref_names: dict[str, str] = {}  # shared weight id -> name its references show
        self._names: dict[str, str] = {}      # node id -> IR name (filled when first needed)
        self._elided: set[str] = set()        # the "... k steps ..." boxes
        self._band_column: list[str] = []     # shared weights drawn in the first gate's column

    # --- ids and clusters ---
    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    def _open(self, kind: str, key: str, label: str, ind: int, style_kind: str | None = None):
        slug = re.sub(r"[^A-Za-z0-9_]", "_", key)
        base = f"cluster_{kind}_{slug}" if slug else f"cluster_{kind}"
        cid, n = base, 1
        while cid in self._clusters:  # same scope name drawn twice (e.g. forward and backward)
            n += 1
            cid = f"{base}_{n}"
        self._clusters.add(cid)
        fill, border, style = _CLUSTER[style_kind or kind]
        pad = "  " * ind
        text = _CLUSTER_TEXT.get(style_kind or kind, border)
        self.lines += [f"{pad}subgraph {_q(cid)} {{",
                       f"{pad}  label=<{label}>; fontsize=11; style={_q(style)}; "
                       f"fillcolor={_q(fill)}; color={_q(border)}; fontcolor={_q(text)};"]

    def _close(self, ind: int):
        self.lines.append("  " * ind + "}")

    def _add_node(self, nid: str, attrs: dict, ind: int, ctx: _Ctx):
        self.attrs[nid] = attrs
        self.lines.append((ind, nid))
        if ctx.step is not None:
            self.step[nid] = ctx.step
        if ctx.grad:
            self.grad_ids.add(nid)

    # --- placing nodes ---
    def build(self, graph: Graph, nodes: list[Node], rankdir: str, title: str | None) -> str:
        fwd = [n for n in nodes if not n.is_gradient]
        bwd = [n for n in nodes if n.is_gradient]
        self._contents(_scope_tree(fwd, "", 0), 1, _Ctx())
        if bwd:
            tree = _scope_tree(bwd, "", 0)
            while not tree.nodes and len(tree.children) == 1:  # the cluster *is* that scope
                tree = next(iter(tree.children.values()))
            self._open("gradients", "", _title(f"backward: {tree.path or 'gradients'}"), 1)
            self._scope(tree, 2, _Ctx(grad=True), as_cluster=False)
            self._close(1)
        self._edge_pass()
        self._references()
        if self.want_legend:
            self._legend()
        self._highlight_fetches()
        rankdir = rankdir or ("LR" if self.timelines else "TB")  # a timeline runs left to right
        return self._emit(graph, rankdir, title)

    def size(self) -> int:
        """Nodes + edges of the picture: what graphviz's layout time grows with."""
        return len(self.attrs) + len(self.edges)

    def positions(self) -> int:
        """Step positions drawn on timelines (a folded box is one)."""
        return sum(self.timelines.values())

    def longest_timeline(self) -> int:
        return max(self.timelines.values(), default=0)

    def _too_deep(self, s: _Scope, ctx: _Ctx, kind: str) -> bool:
        if self.o.max_depth is not None:
            return s.depth > self.o.max_depth
        if not self.o.collapse or kind == "step" or s.depth <= 1:
            return False
        opened = self.o.expand
        if any(s.path == e or e.startswith(s.path + "/") for e in opened):
            return False  # expanded, or on the way to an expanded scope
        parent = s.path.rsplit("/", 1)[0]
        if parent in opened:
            return False  # one level under an expanded scope is drawn (its children fold)
        return not (not ctx.in_body and ctx.step is None and self._holds_steps(s))

    def _holds_steps(self, s: _Scope) -> bool:
        """Whether a static unroll's steps are somewhere under s (then s stays open)."""
        if s.holds_steps is None:  # kept on the scope: ids of freed trees are reused
            kids = list(s.children.values())
            s.holds_steps = self.o.step_re is not None and (
                bool(_step_groups(kids, self.o.step_re))
                or any(self._holds_steps(c) for c in kids))
        return s.holds_steps

    def _scope(self, s: _Scope, ind: int, ctx: _Ctx, kind: str = "scope", as_cluster=True):
        if self._too_deep(s, ctx, kind):
            nid = self._fold(list(s.all_nodes()), s.path, ind, ctx)
            self.folds[nid] = s.path
            self.attrs[nid].update(id=f"scope:{s.path}", tooltip=f"{s.path}: folded scope")
            return nid
        if as_cluster:
            self._open(kind, s.path, _title(_scope_label(s.name, ctx)), ind)
        self._contents(s, ind + 1 if as_cluster else ind, ctx)
        if as_cluster:
            self._close(ind)

    def _contents(self, s: _Scope, ind: int, ctx: _Ctx):
        for n in s.nodes:
            self._node(n, ind, ctx)
        children = list(s.children.values())
        no_steps = ctx.in_body or ctx.step is not None or self.o.step_re is None
        groups = {} if no_steps else _step_groups(children, self.o.step_re)
        base_of = {id(c): b for b, steps in groups.items() for _, c in steps}
        done = set()
        for c in children:
            base = base_of.get(id(c))
            if base is None:
                self._scope(c, ind, ctx)
            elif base not in done:  # the whole group, in step order, where its first one appears
                done.add(base)
                self._steps(f"{s.path}/{base}", groups[base], ind, ctx)

    def _steps(self, key: str, steps: list, ind: int, ctx: _Ctx):
        """One cluster per step; past max_steps the middle ones fold into one box."""
        if ind > 1 and not ctx.grad:  # the enclosing cluster reaches the first gate's column,
            # so the first input (hanging from that gate) is kept outside it (see
            # `_references`)
            self._add_node(f"anchor_{key}", {"shape": "point", "style": "invis", "width": "0",
                                             "height": "0", "label": ""}, ind, _Ctx())
        head, middle, tail = steps, [], []
        if len(steps) > self.o.max_steps and not self.o.all_steps:
            head, tail = steps[:HEAD_STEPS], steps[-TAIL_STEPS:]
            middle = steps[HEAD_STEPS:-TAIL_STEPS]
        pos = 0  # position on the timeline: the folded box is one position
        for k, c in head:
            self._scope(c, ind, replace(ctx, step=(key, pos)), kind="step")
            pos += 1
        if middle:
            nodes = [n for _, c in middle for n in c.all_nodes()]
            self._fold(nodes, f"... {len(middle)} steps ...", ind,
                       replace(ctx, step=(key, pos)), elided=True)
            pos += 1
        for k, c in tail:
            self._scope(c, ind, replace(ctx, step=(key, pos)), kind="step")
            pos += 1
        self.timelines[key] = pos
        if ctx.grad:  # a gradient's steps: its state runs from step i+1 to step i
            self._backward.add(key)

    def _fold(self, nodes: list[Node], label: str, ind: int, ctx: _Ctx, elided: bool = False):
        """One box standing for `nodes` (and their loop bodies); their edges end on it."""
        nid = self._new_id("fold")
        every = list(_with_bodies(nodes))
        count = sum(1 for n in every if n.op.name != "param")
        grad = ctx.grad or all(n.is_gradient for n in nodes)
        fill, border = _STYLE["grad" if grad else "fold"]
        if elided:
            self._elided.add(nid)
            look = {"shape": "box", "style": "rounded,dashed,filled", "fillcolor": "#ffffff",
                    "color": border, "label": _Html(f"<I>{_esc(label)}</I><BR/>"
                                                    f"{_small(f'{count} nodes')}")}
        else:
            look = {"shape": "box3d", "style": "filled", "fillcolor": fill, "color": border,
                    "label": _Html(f"<B>{_esc(label)}</B><BR/>{_small(f'{count} nodes')}")}
        self._add_node(nid, look, ind, replace(ctx, grad=grad))
        for n in every:
            self.vis[n] = nid
            self.members.append(n)
        return nid

    def _node(self, n: Node, ind: int, ctx: _Ctx):
        if n.op.subgraphs():
            return self._loop(n, ind, ctx)
        nid = self._new_id("n")
        if ind == 1 and not (ctx.grad or n.is_gradient):
            self._top.add(nid)  # outside every cluster: flat edges to the gates order it
        self.vis[n] = nid
        self.members.append(n)
        self._add_node(nid, _node_look(n, ctx.grad or n.is_gradient), ind,
                       replace(ctx, grad=ctx.grad or n.is_gradient))

    def _consumed_in(self, graph: Graph) -> set:
        if id(graph) not in self._consumed:
            self._consumed[id(graph)] = {v for n in graph.nodes for v in n.inputs}
        return self._consumed[id(graph)]

    def _loop(self, n: Node, ind: int, ctx: _Ctx):
        """The loop as a cluster: params in, the body, ports out."""
        op, body = n.op, n.op.body
        ctx = replace(ctx, grad=ctx.grad or n.is_gradient)
        self.loops.add(n)
        self.members.append(n)
        flags = [f for f, on in (("while", bool(body.results.get("cond"))),
                                 ("reverse", getattr(op, "reverse", False)),
                                 ("swap_memory", getattr(op, "swap_memory", False))) if on]
        label = _title(f"loop {n.name}" + (f" ({', '.join(flags)})" if flags else ""))
        self._open("loop", n.name, label, ind, "grad_loop" if ctx.grad else "loop")
        inner_ctx, i2 = replace(ctx, in_body=True), ind + 1
        self.lines.append("  " * i2 + "{ rank=same;")  # the params line up as the loop's top row
        if op.in_ports().sizes["trip"]:
            self._port((n, "trip"), "trip", "i32[]", i2 + 1, inner_ctx)
        if op.in_ports().sizes["rows"]:  # active rows per step (dynamic_rnn's lengths)
            self._port((n, "rows"), "rows", "i32[?]", i2 + 1, inner_ctx)
        used = self._consumed_in(body) | {v for vs in body.results.values() for v in vs}
        for role in ("step", "carried", "invariant", "sequence"):
            for p in body.params.get(role, []):
                if role != "step" or p in used:
                    self._param(p.node, role, i2 + 1, inner_ctx)
        self._close(i2)
        inner = [m for m in body.nodes if m.op.name != "param"]
        scope = n.name.rsplit("/", 1)[0] + "/" if "/" in n.name else ""
        strip = n.name + "/" if any(m.name.startswith(n.name + "/") for m in inner) else scope
        self._contents(_scope_tree(inner, strip, strip.count("/")), i2, inner_ctx)
        self.lines.append("  " * i2 + "{ rank=same;")  # and the outputs as its bottom row
        self._out_ports(n, i2 + 1, inner_ctx)
        if body.results.get("cond"):
            self._port((n, "cond"), "cond", "", i2 + 1, inner_ctx, shape="diamond")
        self._close(i2)
        self._close(ind)

    def _param(self, p: Node, role: str, ind: int, ctx: _Ctx):
        nid = self._new_id("p")
        self.vis[p] = nid
        self.members.append(p)
        tail = _tail(p.name)
        text = tail if tail.startswith(role) else f"{role}: {tail}"
        self._add_node(nid, {"shape": "box", "style": "rounded,dashed,filled", "fontsize": "9",
                             "fillcolor": _STYLE["param"][0], "color": _STYLE["param"][1],
                             "label": _Html(f"<I>{_esc(text)}</I><BR/>"
                                            f"{_small(str(p.outputs[0].type))}")}, ind, ctx)

    def _out_ports(self, n: Node, ind: int, ctx: _Ctx):
        """A port per loop output that is used, fetched, or saved for the backward pass."""
        outs = n.op.out_ports().split(n.outputs)
        need = self._consumed_in(n.graph) | set(self.o.fetches)
        shown = {g: [(i, v) for i, v in enumerate(vs) if g == "residual" or v in need]
                 for g, vs in outs.items()}
        if not shown["carried"] and not shown["output"]:  # show what the loop makes, even unused
            shown["carried"], shown["output"] = list(enumerate(outs["carried"])), \
                list(enumerate(outs["output"]))
        saved = n.op.body.results["residual"]
        names = {"steps": "steps", "carried": "final carried", "output": "stacked output"}
        for group in ("steps", "carried", "output", "residual"):
            for i, v in shown[group]:
                if group == "residual":
                    r = saved[i]  # name the saved body value; `:k` when its node has several
                    what = _tail(r.node.name) + (f":{r.index}" if len(r.node.outputs) > 1 else "")
                    self._residual_port(v, i, what, ind, ctx)
                else:
                    text = names[group] + ("" if group == "steps" else f" {i}")
                    if group == "carried":  # name the state, e.g. the gradient accumulator
                        tail = _tail(n.op.body.params["carried"][i].node.name)
                        text += "" if tail == f"carried_{i}" else f": {tail}"
                    self._port(v, text, str(v.type), ind, ctx)

    def _port(self, key, text: str, typ: str, ind: int, ctx: _Ctx, shape: str = "box",
              fill: str | None = None, border: str | None = None, extra: str = ""):
        nid = self._new_id("port")
        (self.ports if isinstance(key, Value) else self.extra_ports)[key] = nid
        label = f"<I>{_esc(text)}</I>" + (f"<BR/>{_small(typ)}" if typ else "") + extra
        style = "rounded,filled" if shape == "box" else "filled"
        self._add_node(nid, {"shape": shape, "style": style, "fontsize": "9",
                             "fillcolor": fill or _STYLE["port"][0],
                             "color": border or _STYLE["port"][1], "label": _Html(label)}, ind, ctx)

    def _residual_port(self, v: Value, i: int, what: str, ind: int, ctx: _Ctx):
        """A saved tensor: coloured by where the plan puts it, labelled with its size."""
        fill = border = None
        extra = ""
        plan = self.o.plan
        if plan is not None:
            where, size = plan.placement_of(v), plan.bytes_of(v)
            fill, border = _PLACEMENT.get(where, (None, None))
            bits = [b for b in (where, _fmt_bytes(size) if size is not None else None) if b]
            extra = f"<BR/>{_small(' | '.join(bits), border or _MUTED)}" if bits else ""
        extra += f"<BR/>{_small('kept for the backward pass', _MUTED, 7)}"
        self._port(v, f"saved {i}: {what}", str(v.type), ind, ctx, fill=fill, border=border,
                   extra=extra)

    def _legend(self):
        """What each colour means: one sample per kind of box drawn (and every placement when
        a plan colours the saved tensors), with the same fill and border as in the picture."""
        fills = {a.get("fillcolor") for a in self.attrs.values()}
        entries = [(text, kind) for text, kind in _LEGEND if _STYLE[kind][0] in fills]
        if self.o.plan is not None:
            entries += [(f"saved, {_PLACEMENT_TEXT[w]}", w) for w in _PLACEMENT]
        if any(k in self.edges_kinds() for k in ("state", "back")):
            entries.append(("red line: the state passed to the next step", "state"))
        if not entries:
            return
        self._open("legend", "", _title("legend"), 1)
        for text, kind in reversed(entries):  # dot lays a rank's unlinked nodes right to left
            if kind == "state":
                look = {"shape": "plaintext", "fontcolor": _STATE}
            else:
                fill, border = _PLACEMENT[kind] if kind in _PLACEMENT else _STYLE[kind]
                look = {"shape": "box", "style": "rounded,filled", "fillcolor": fill,
                        "color": border}
            self._add_node(f"legend_{kind}", {**look, "fontsize": "9", "label": text}, 2, _Ctx())
        self._close(1)

    def edges_kinds(self) -> set:
        return {k for _, _, k in self.edges}

    # --- edges ---
    def _src(self, v: Value) -> str | None:
        if v.node in self.loops:
            return self.ports.get(v)
        return self.vis.get(v.node)

    def _edge(self, v: Value, dst: str | None, kind: str = "data"):
        src = self._src(v)
        if src is None or dst is None or src == dst:  # not drawn, or inside one folded box
            return
        a, b = self.step.get(src), self.step.get(dst)
        if kind == "data" and a and b and a[0] == b[0] and a[1] != b[1]:
            kind = "state"
        self.edges.setdefault((src, dst, kind), []).append(v)

    def _edge_pass(self):
        for n in self.members:
            if n in self.loops:
                self._loop_edges(n)
            elif n.op.name != "param":
                for v in n.inputs:
                    self._edge(v, self.vis[n])

    def _loop_edges(self, n: Node):
        op, body = n.op, n.op.body
        ins = op.in_ports().split(n.inputs)
        for group in ("trip", "rows"):
            for v in ins[group]:
                self._edge(v, self.extra_ports[(n, group)])
        for role in ("carried", "invariant", "sequence"):
            for v, p in zip(ins[role], body.params.get(role, [])):
                self._edge(v, self.vis.get(p.node))
        outs = op.out_ports().split(n.outputs)
        for group in ("carried", "output", "residual"):
            for r, v in zip(body.results[group], outs[group]):
                if v in self.ports:
                    self._edge(r, self.ports[v], "port")
        for r, p in zip(body.results["carried"], body.params.get("carried", [])):
            self._edge(r, self.vis.get(p.node), "back")
        for r in body.results.get("cond", []):
            self._edge(r, self.extra_ports[(n, "cond")], "port")

    def _highlight_fetches(self):
        for v in self.o.fetches:
            nid = self._src(v)
            if nid is not None:
                self.attrs[nid].update(penwidth="3", color=_FETCH)

    # --- text ---
    def _edge_attrs(self, src: str, dst: str, kind: str, vals: list) -> dict:
        a = {"color": _GRAD_EDGE if dst in self.grad_ids else _EDGE}
        a.update(_EDGE_STYLE[kind])
        if kind == "state":  # along the timeline: straight; against it (gradients): free
            a.update({"weight": "8"} if self.step[src][1] < self.step[dst][1]
                     else {"constraint": "false"})
        if self._crosses_backward_timeline(src, dst):
            a["constraint"] = "false"  # the gates alone place a gradient timeline (see below)
        if kind == "back":
            a["label"] = "next"
        elif self.o.edge_labels and kind != "port" and not (self.step.get(src)
                                                            and self.step.get(dst)):
            # not along a timeline: there a label doubles the width; the nodes show types
            types = {str(v.type) for v in vals}
            a["label"] = types.pop() if len(types) == 1 else f"{len(vals)} values"
        return a

    def _emit(self, graph: Graph, rankdir: str, title: str | None) -> str:
        head = [f"digraph {_q(graph.name)} {{",
                f"  graph [rankdir={rankdir}, compound=true, newrank=true, fontname={_q(_FONT)}, "
                f"fontsize=14, nodesep=0.3, ranksep=0.4, labeljust=l, "
                f"bgcolor=\"white\"{', labelloc=t, label=' + _q(title) if title else ''}];",
                f"  node [fontname={_q(_FONT)}, fontsize=10, margin=\"0.12,0.05\", height=0.3, "
                f"penwidth=1.2];",
                f"  edge [fontname={_q(_FONT)}, fontsize=8, fontcolor=\"#7a7a7a\", "
                f"arrowsize=0.6, penwidth=1.0];"]
        gates, order = self._timeline_order()
        edges = [f"  {_q(s)} -> {_q(d)} {_attr_list(self._edge_attrs(s, d, k, vals))};"
                 for (s, d, k), vals in self.edges.items()]
        # the gates are declared first: dot then keeps the inputs hanging from them under the
        # forward steps (see `_references`)
        return "\n".join(head + gates + self._body_lines() + edges + order + ["}"]) + "\n"

    def _body_lines(self) -> list[str]:
        body = []
        for item in self.lines:
            if isinstance(item, tuple):
                ind, nid = item
                body += [f"{'  ' * ind}{_q(r)} {_attr_list(self.attrs[r])};"
                         for r in self._refs_before.get(nid, ())]
                body.append(f"{'  ' * ind}{_q(nid)} {_attr_list(self.attrs[nid])};")
            else:
                body.append(item)
        return body

    def _crosses_backward_timeline(self, src: str, dst: str) -> bool:
        a, b = self.step.get(src), self.step.get(dst)
        ga, gb = a[0] if a else None, b[0] if b else None
        return ga != gb and (ga in self._backward or gb in self._backward)

    def _timeline_order(self) -> tuple[list[str], list[str]]:
        """The hidden gates' declarations, and the invisible edges and rank constraints that
        lay each step group out as a timeline (with rankdir=LR the rank
        is the x position): a hidden gate between steps i and i+1 that every node ending step
        i's own chain points to and that points to every node starting step i+1, so the steps
        go left to right in order whatever the state's direction (forward or gradient); the
        gates are chained with a heavy edge to keep them on one line. A gradient's timeline
        (state flowing from step i+1 to step i) would fight its gates through the nodes outside
        it (the output gradients summed into each step): there every edge that enters or leaves
        the timeline is drawn without constraining the layout, so the gates alone place it."""
        members: dict[tuple, list] = {}
        for nid, at in self.step.items():
            members.setdefault(at, []).append(nid)
        has_in, has_out = set(), set()
        for s, d, _ in self.edges:
            a, b = self.step.get(s), self.step.get(d)
            if a is not None and a == b:
                has_out.add(s)
                has_in.add(d)
            elif a is not None and b is not None and a[0] == b[0] and a[1] > b[1]:
                self._backward.add(a[0])  # the state flows from later steps to earlier ones
        out, declared = [], []
        for key, count in self.timelines.items():
            gates = [_q(f"gate_{key}_{pos}") for pos in range(count)]
            group = _q(f"timeline_{key}")
            declared += [f"  {g} [shape=point, style=invis, width=0, height=0, label=\"\", "
                         f"group={group}];" for g in gates]
            if count > 1:
                out.append("  " + " -> ".join(gates) + " [style=invis, weight=20];")
            for pos in range(count):
                out += [f"  {gates[pos]} -> {_q(nid)} [style=invis];"
                        for nid in members.get((key, pos), []) if nid not in has_in]
                if pos + 1 < count:
                    out += [f"  {_q(nid)} -> {gates[pos + 1]} [style=invis];"
                            for nid in members.get((key, pos), []) if nid not in has_out]
        first = None
        for key in self.timelines:  # a forward timeline's cluster spans its first gate's column
            if f"anchor_{key}" in self.attrs:
                out.append(f"  {{ rank=same; {_q(f'gate_{key}_0')}; {_q(f'anchor_{key}')}; }}")
            if key not in self._backward:
                first = first or key
        if first is not None and self._band_column:  # the weights in a column of the timeline
            out.append(f"  {{ rank=same; {_q(f'gate_{first}_0')}; "
                       + " ".join(f"{_q(w)};" for w in self._band_column) + " }")
        for key in self._backward:  # a gradient's steps under the forward steps they differentiate
            fwd = self._forward_of(key)
            if fwd is not None:
                out += [f"  {{ rank=same; {_q(f'gate_{fwd}_{pos}')}; {_q(f'gate_{key}_{pos}')}; }}"
                        for pos in range(self.timelines[key])]
        return declared, out + self._inputs_below()

    # --- shared weights above a timeline, inputs below it ---
    def _references(self):
        """Draw a static unroll's shared weights once, above its timeline, and its inputs
        below it, without constraints dot is slow with or fails on.

        With rankdir LR, "above" is the order of the nodes within one column, which dot
        decides by crossing heuristics: a rank or flat-edge constraint between a node and a
        cluster is ignored. So:

        - the weights (variables, folded boxes of them, and what is computed from them alone
          outside the steps) leave their scope clusters for a cluster of their own, declared
          after the rest and ranked in the column of the timeline's first gate, and each step
          reads them through a small reference node (a dashed cylinder, "kernel" with an arrow
          up) instead of an edge from the far left. No edge then ties them to the timeline,
          and dot stacks them above it. Weights that something outside the steps also reads
          (an optimizer, a regularizer) stay in their scope clusters, with that edge, where
          dot's heuristics place them; the steps still read them through references;
        - each input hangs below the hidden gate before the first step it feeds (see
          `_inputs_below`); its reads by the backward steps, and with a gradient drawn by the
          forward nodes outside the steps (the zero state's batch size), are references
          ("x0" with an arrow down).

        dot's heuristics decide in the end: tests/test_render_weights.py checks the outcome
        on LSTM unrolls of 2, 10 and 50 steps, forward and gradient."""
        if not self.timelines:
            return
        self._fold_inputs()
        band, inputs = self._shared_and_inputs()
        self._inputs = inputs
        refs: dict[tuple, str] = {}
        for (src, dst, kind), vals in list(self.edges.items()):
            at = self.step.get(dst)
            if src in band and at is not None:
                up = True
            elif src in inputs and src in self._top and (
                    at[0] != inputs[src][0] if at is not None else bool(self._backward)):
                up = False   # an input read outside its forward timeline (see above)
            else:
                continue
            key = (src, at if at is not None else dst)
            if key not in refs:
                refs[key] = self._reference(src, dst, at, up)
            del self.edges[(src, dst, kind)]
            self.edges.setdefault((refs[key], dst, kind), []).extend(vals)
        if band and all(dst in band for src, dst, _ in self.edges if src in band):
            self._lift(band)  # only the steps read them: nothing ties them to the rest
            fed = {dst for src, dst, _ in self.edges if src in band}
            self._band_column = sorted(band - fed)  # the weights no other weight feeds

    def _fold_inputs(self):
        """The inputs read only by folded middle steps ("... k steps ..."), drawn outside every
        cluster, become one input box ("x2 ... x47", "46 inputs"), as their steps did."""
        shown: dict[str, list] = {}
        for n, nid in self.vis.items():
            shown.setdefault(nid, []).append(n)
        reads: dict[str, set] = {}
        for src, dst, _ in self.edges:
            reads.setdefault(src, set()).add(dst)
        groups: dict[frozenset, list] = {}
        for nid in self._top:
            if nid in shown and nid in reads and reads[nid] <= self._elided and \
                    all(n.op.name == "placeholder" for n in shown[nid]):
                groups.setdefault(frozenset(reads[nid]), []).append(nid)
        order = {n: i for i, n in enumerate(self.members)}  # placed in creation order
        for members in groups.values():
            if len(members) < 2:
                continue
            nodes = sorted((n for m in members for n in shown[m]), key=order.get)
            box = self._new_id("inputs")
            fill, border = _STYLE["placeholder"]
            names = f"{_tail(nodes[0].name)} \u2026 {_tail(nodes[-1].name)}"
            self.attrs[box] = {"shape": "invhouse", "style": "filled", "fillcolor": fill,
                               "color": border, "label": _Html(
                                   f"<B>{_esc(names)}</B><BR/>{_small(f'{len(nodes)} inputs')}"),
                               "tooltip": ", ".join(n.name for n in nodes)}
            gone = set(members)
            at = next(i for i, it in enumerate(self.lines) if isinstance(it, tuple)
                      and it[1] in gone)
            self.lines[at] = (self.lines[at][0], box)
            self.lines = [it for it in self.lines if not (isinstance(it, tuple) and it[1] in gone)]
            for n in nodes:
                self.vis[n] = box
            for (src, dst, kind), vals in list(self.edges.items()):
                if src in gone:
                    del self.edges[(src, dst, kind)]
                    self.edges.setdefault((box, dst, kind), []).extend(vals)
            for m in members:
                del self.attrs[m]
            self._top -= gone
            self._top.add(box)
        self._names.clear()

    def _reference(self, src: str, dst: str, at, up: bool) -> str:
        """A small node standing for `src` (drawn once elsewhere), just before `dst`."""
        rid = self._new_id("ref")
        name = self._ref_names.get(src) or self._display_name(src)
        look = {"shape": "cylinder" if up else "invhouse", "style": "dashed,filled",
                "fillcolor": _STYLE["ref"][0], "color": _STYLE["ref"][1], "fontsize": "8",
                "height": "0.2", "margin": "0.04,0.02",
                "label": _Html(f"<I>{_esc(name)}</I> {'&#8593;' if up else '&#8595;'}"),
                "tooltip": f"{self._display_name(src, full=True)}: drawn once, "
                           f"{'above' if up else 'below'} the timeline"}
        self.attrs[rid] = look
        self._refs_before.setdefault(dst, []).append(rid)
        if at is not None:
            self.step[rid] = at
        if dst in self.grad_ids:
            self.grad_ids.add(rid)
        return rid

    def _display_name(self, nid: str, full: bool = False) -> str:
        """The scope path of a folded box, else the (tail of the) name of the node drawn."""
        if nid in self.folds:
            return self.folds[nid]
        if not self._names:
            for n, i in self.vis.items():
                self._names.setdefault(i, n.name)
        name = self._names.get(nid, nid)
        return name if full else _tail(name)

    def _shared_and_inputs(self) -> tuple[set, dict]:
        """The shared weights of the forward timelines (node ids) and their inputs (node id ->
        (timeline, first position it feeds)), among the drawn forward nodes outside the steps.
        A weight is a variable, a folded box of variables only, or a node computed from
        weights alone (a read) that leads to a step; an input is a placeholder or a folded box
        of placeholders feeding a step."""
        shown: dict[str, list] = {}
        for n, nid in self.vis.items():
            shown.setdefault(nid, []).append(n)
        loose = {nid for nid, ns in shown.items() if nid not in self.step and
                 nid not in self.grad_ids and not any(n in self.loops for n in ns)}

        def only(nid, kind):
            return nid in loose and all(n.op.name == kind for n in shown[nid])

        feeds: dict[str, set] = {}    # node id -> ids feeding it
        for src, dst, _ in self.edges:
            feeds.setdefault(dst, set()).add(src)
        shared = {nid for nid in loose if only(nid, "variable")}
        grown = True
        while grown:  # reads: computed outside the steps from weights alone
            grown = False
            for dst, srcs in feeds.items():
                if dst in loose and dst not in shared and srcs <= shared:
                    shared.add(dst)
                    grown = True
        band, inputs = set(), {}
        for src, dst, _ in self.edges:
            at = self.step.get(dst)
            if at is None or at[0] in self._backward:
                continue
            if src in shared:
                band.add(src)
            elif only(src, "placeholder"):
                old = inputs.get(src)
                if old is None or (old[0] == at[0] and at[1] < old[1]):
                    inputs[src] = at
        stack = list(band)
        while stack:  # and the weights those reads are computed from
            for src in feeds.get(stack.pop(), ()):
                if src in shared and src not in band:
                    band.add(src)
                    stack.append(src)
        return band, inputs

    def _lift(self, band: set):
        """Move the shared weights out of their scope clusters into one cluster of their own,
        declared after everything drawn so far (dot stacks it above), its sub-scopes nested."""
        def scope_of(nid):
            if nid in self.folds:
                return self.folds[nid].split("/")
            name = self._display_name(nid, full=True)
            return name.split("/")[:-1]
        scopes = {nid: scope_of(nid) for nid in band}
        common = []
        for parts in zip(*scopes.values()):
            if len(set(parts)) != 1:
                break
            common.append(parts[0])
        for nid in band:  # references name the weight below the common scope: gates/kernel
            rel = self._display_name(nid, full=True).split("/")[len(common):]
            self._ref_names[nid] = "/".join(rel) if nid not in self.folds and rel else \
                self._display_name(nid)
        self.lines = [it for it in self.lines if not (isinstance(it, tuple) and it[1] in band)]
        self._drop_empty_clusters()
        path = "/".join(common)
        self._open("shared", path, _title(f"{path}: weights shared by every step" if path
                                          else "weights shared by every step"), 1, "scope")
        groups: dict[str, list] = {}
        for nid in sorted(band, key=lambda i: int(re.sub(r"\D", "", i) or 0)):
            groups.setdefault("/".join(scopes[nid][len(common):]), []).append(nid)
        for rel, nids in groups.items():
            if rel:
                self._open("scope", f"{path}/{rel}", _title(rel), 2)
            self.lines += [(3 if rel else 2, nid) for nid in nids]
            if rel:
                self._close(2)
        self._close(1)

    def _drop_empty_clusters(self):
        """Remove the clusters left with no node (after their nodes moved elsewhere)."""
        while True:
            stack, empty = [], None
            for i, it in enumerate(self.lines):
                if isinstance(it, str) and it.lstrip().startswith(("subgraph ", "{")):
                    stack.append([i, False])
                elif isinstance(it, str) and it.strip() == "}":
                    start, full = stack.pop()
                    if not full and self.lines[start].lstrip().startswith("subgraph "):
                        empty = (start, i)
                        break
                    if stack and full:
                        stack[-1][1] = True
                elif isinstance(it, tuple) and stack:
                    stack[-1][1] = True
            if empty is None:
                return
            del self.lines[empty[0]:empty[1] + 1]

    def _inputs_below(self) -> list[str]:
        """Each input drawn outside every cluster shares its column with the hidden gate before
        the first step it feeds and hangs below it: a flat edge gate -> input, which dot keeps
        top to bottom (both are outside every cluster). The gates sit outside the timeline's
        clusters, so the inputs do too; on which side is dot's choice (see `_references`)."""
        out = []
        for nid, (key, pos) in sorted(self._inputs.items()):
            if nid in self._top and key not in self._backward and pos < self.timelines.get(key, 0):
                gate, x = _q(f"gate_{key}_{pos}"), _q(nid)
                out += [f"  {{ rank=same; {gate}; {x}; }}", f"  {gate} -> {x} [style=invis];"]
        return out

    def _forward_of(self, key: str) -> str | None:
        """The forward step group a gradient's step group mirrors (same steps, same count):
        `gradients/rnn/step` mirrors `rnn/step`."""
        for fwd, count in self.timelines.items():
            if (fwd not in self._backward and count == self.timelines[key]
                    and key.endswith("/" + fwd)):
                return fwd
        return None


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _attr_list(attrs: dict) -> str:
    parts = [f"{k}=<{v}>" if isinstance(v, _Html) else f"{k}={_q(v)}" for k, v in attrs.items()]
    return "[" + ", ".join(parts) + "]"
