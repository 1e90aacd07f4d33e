"""The `rnngraph` command (also `python -m rnngraph`).

    rnngraph demo [--cell basic|lstm|gru] [--units N] [--epochs N] [--unroll dynamic|static]
                  [--device cpu|gpu|auto] [--out DIR] [--seed N]
    rnngraph render FILE|EXAMPLE [-o out.svg] [--grad] [--unroll dynamic|static]
    rnngraph print  FILE|EXAMPLE [--grad] [--unroll dynamic|static]
    rnngraph plan   FILE|EXAMPLE [--budget 64MB] [--batch N] [--steps N]
    rnngraph export FILE|EXAMPLE -o model.onnx [--check] [--route auto|rnn|loop] [--opset N]
    rnngraph examples

FILE is a graph saved with `rg.save` (e.g. out/model.npz from the demo); EXAMPLE is one of the
built-in graphs (`rnngraph examples` lists them). Errors are reported in one line on stderr with
a non-zero exit status; set RNNGRAPH_DEBUG=1 to see a traceback instead.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import rnngraph as rg

from . import examples_registry
from .demo import CELLS, DEFAULTS, UNROLLS, memory_plan, memory_plan_available, run_demo
from .demo import run_distributed_demo
from .errors import CLIError, DiagramTooLargeError, RenderError, RnnGraphError
from .io import read
from .io.onnx.check import compare as onnx_compare, random_feed   # onnx loads on use
from .io.onnx.export import export as onnx_export
from .ir import format_graph
from .memory.accounting import fmt_bytes
from .memory.planner import ops_unknown
from .render import format_for, render
from .runtime.planning import no_floor_reason
from .runtime.session import Session
from .version import __version__

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported in one line."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --- argument types ------------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3, "t": 1024**4,
          "tb": 1024**4, "tib": 1024**4}


def parse_bytes(text: str) -> int:
    """'64MB' -> 67108864. Units are binary (KB = KiB = 1024 bytes); a bare number is bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 64MB, 1.5GB, 512KB "
                                         "or a number of bytes)")
    n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if n < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be at least one byte")
    return int(n)


def format_bytes(n: int) -> str:
    """Bytes as the memory plans print them ("30.4 KiB"), so one output uses one unit style."""
    return fmt_bytes(n)


def _int_at_least(lowest: int, what: str):
    """An argparse type: an int >= `lowest`, with a one-line error otherwise."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = None
        if n is None or n < lowest:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return n
    return parse


_positive = _int_at_least(1, "a positive integer")
_nonneg = _int_at_least(0, "an integer >= 0")


def _learning_rate(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"the learning rate must be > 0, got {text!r}")
    return x


def _dropout_rate(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= x < 1.0:
        raise argparse.ArgumentTypeError(f"the dropout rate must be in [0, 1), got {text!r}")
    return x


# --- graphs from files or built-in examples -------------------------------------------------------
@dataclass
class Source:
    graph: object
    fetches: dict       # name -> Value
    label: str          # for titles and default file names
    what: str           # "example 'lstm'" / "file out/model.npz"


def load_source(spec: str, unroll: str | None = None, grad: bool = False,
                steps: int | None = None) -> Source:
    """A saved graph file, or a built-in example by name (over `steps` time steps when given:
    a saved graph's steps are checked where its feeds are made, sample_feed)."""
    if os.path.exists(spec):
        if unroll is not None:
            raise CLIError(f"--unroll applies to built-in examples; {spec} is a saved graph "
                           "(its unrolling was fixed when it was built)")
        saved = read(spec)
        src = Source(saved.graph, dict(saved.fetches), Path(spec).name.split(".")[0] or "graph",
                     f"file {spec}")
        if grad and gradient_values(src) is None:
            add_gradients(src)
        return src
    if spec in examples_registry.names():
        try:
            ex = examples_registry.build(spec, unroll=unroll, grad=grad, steps=steps)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        return Source(ex.graph, ex.fetches, spec, f"example '{spec}'")
    known = ", ".join(examples_registry.names())
    if os.sep in spec or "/" in spec or Path(spec).suffix:
        raise CLIError(f"no such file: {spec} (nor is it a built-in example: {known})")
    raise CLIError(f"{spec!r} is neither a file nor a built-in example (examples: {known})")


def _tainted(graph) -> set:
    """Nodes of `graph` that are gradient nodes or read (transitively) from one."""
    bad: set = set()
    for n in graph.nodes:
        if n.is_gradient or any(v.node in bad for v in n.inputs):
            bad.add(n)
    return bad


def gradient_values(src: Source):
    """The gradient values of a graph: named 'gradient/...' fetches, else the outputs of
    gradient nodes no other gradient node reads; None when the graph has no gradients."""
    named = [v for k, v in src.fetches.items() if k.startswith("gradient/")]
    if named:
        return named
    grad_nodes = [n for n in src.graph.nodes if n.is_gradient]
    if not grad_nodes:
        return None
    read = {v for n in grad_nodes for v in n.inputs}
    return [v for n in grad_nodes for v in n.outputs if v not in read]


def forward_values(src: Source) -> list:
    """The forward part of a graph: its named fetches that do not depend on gradients, else the
    sinks of the nodes that do not (a graph without gradients is drawn whole)."""
    tainted = _tainted(src.graph)
    if not tainted:
        return []  # draw the whole graph
    named = [v for k, v in src.fetches.items()
             if not k.startswith("gradient/") and v.node not in tainted
             and v.node.op.name not in ("placeholder", "variable", "constant")]
    if named:
        return named
    # sinks of the gradient-free part that the gradients read (the loss) or nobody reads (a
    # metric); not the optimizer's arithmetic on its slots, which only the updates read
    forward = [n for n in src.graph.nodes if n not in tainted]
    read_fwd = {v for n in forward for v in n.inputs}
    read_any = {v for n in src.graph.nodes for v in n.inputs}
    read_grad = {v for n in src.graph.nodes if n.is_gradient for v in n.inputs}
    return [v for n in forward if n.inputs for v in n.outputs
            if v not in read_fwd and (v in read_grad or v not in read_any)]


def add_gradients(src: Source) -> None:
    """Differentiate the graph's loss (a 'loss' fetch, or its only scalar float sink) with
    respect to its trainable variables, adding the gradient nodes to the graph."""
    loss = src.fetches.get("loss")
    if loss is None:
        read = {v for n in src.graph.nodes for v in n.inputs}
        sinks = [v for n in src.graph.nodes for v in n.outputs
                 if v not in read and v.shape == () and np.issubdtype(v.dtype, np.floating)]
        if len(sinks) != 1:
            raise CLIError(f"{src.what} holds no gradients and no single scalar loss to "
                           "differentiate (save it with fetches={'loss': loss})")
        loss = sinks[0]
    variables = rg.trainable_variables(src.graph)
    if not variables:
        raise CLIError(f"{src.what} has no trainable variables to differentiate against")
    with src.graph.as_default():
        grads = rg.gradients(loss, variables)
    for v, g in zip(variables, grads):
        if g is not None:
            src.fetches[f"gradient/{v.node.name}"] = g


# --- commands ------------------------------------------------------------------------------------
def cmd_examples(args) -> int:
    rows = examples_registry.describe()
    width = max(len(n) for n, _ in rows)
    print("built-in examples (use with: rnngraph print|render|plan NAME [--unroll static] "
          "[--grad])")
    for name, desc in rows:
        print(f"  {name:<{width}}  {desc}")
    return 0


def cmd_print(args) -> int:
    src = load_source(args.source, args.unroll, args.grad)
    sys.stdout.write(format_graph(src.graph, locations=not args.no_locations) + "\n")
    return 0


def cmd_render(args) -> int:
    fmt = "html" if args.html else None
    if args.format is not None:
        if fmt is not None and args.format != "html":
            raise CLIError(f"--html contradicts --format {args.format}")
        fmt = args.format
    if args.output:
        fmt = format_for(args.output, fmt)  # an unknown suffix is an error before any work
    fmt = fmt or "svg"
    src = load_source(args.source, args.unroll, args.grad, args.steps)
    if args.grad:
        values = gradient_values(src)
        kind = "gradient graph"
    else:
        values = forward_values(src)
        kind = "graph"
    target = values if values else src.graph
    plan = None
    if args.plan or args.budget is not None:
        plan = _plan_for(src, args.budget, args.batch, args.steps, args.device)
    out = args.output or f"{src.label}{'_grad' if args.grad else ''}.{fmt}"
    opts = {}
    if args.max_depth is not None:
        opts["max_depth"] = args.max_depth
    elif args.grad or args.expand or fmt == "html":
        opts["collapse"] = True  # one box per name scope; --expand opens one
    if args.expand:
        opts["expand"] = args.expand
    if args.all_steps:
        opts["all_steps"] = True
    if args.rankdir:
        opts["rankdir"] = args.rankdir
    title = args.title if args.title is not None else f"{kind} of {src.what}"
    if title:
        opts["title"] = title
    if plan is not None:
        opts["plan"] = plan
    try:
        path = render(target, out, format=fmt, **opts)
    except RenderError as exc:
        if "not found" in str(exc):
            raise CLIError(f"{exc}; or write DOT text with -o {Path(out).with_suffix('.dot')}")
        raise
    except DiagramTooLargeError as exc:  # name the command's options, not the function's
        msg = (str(exc).replace("max_depth=1 (--max-depth 1)", "--max-depth 1")
               .replace("(all_steps=False, no --all-steps)", "(leave out --all-steps)")
               .replace("or pass max_size=None to lay it out anyway",
                        "or write the DOT text (-o FILE.dot) and run dot yourself"))
        raise CLIError(msg) from None
    print(f"wrote {path} ({kind} of {src.what})")
    why = _misfit(plan, args.budget) if args.budget is not None else None
    if why is not None:   # (the diagram shows the plan that does not fit; exit as plan does)
        print(f"rnngraph render: {why}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_plan(args) -> int:
    src = load_source(args.source, args.unroll, grad=True, steps=args.steps)
    plan = _plan_for(src, args.budget, args.batch, args.steps, args.device)
    text = str(plan)
    header = (f"memory plan for one training step of {src.what} (batch {args.batch}"
              + (f", budget {format_bytes(args.budget)}" if args.budget else "") + ")")
    if args.output:
        Path(args.output).write_text(header + "\n" + text + "\n")
        print(f"wrote {args.output}")
    else:
        print(header)
        print(text)
    why = _misfit(plan, args.budget)
    if why is not None:   # a plan that does not fit is a failed check
        print(f"rnngraph plan: {why}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _misfit(plan, budget) -> str | None:
    """Why `plan` does not fit the --budget (None where it fits)."""
    if plan is not None and not plan.fits:
        if plan.unknown:
            why = (f"it cannot be checked: {ops_unknown(plan.unknown)}, "
                   f"{plan.unknown[0]} among them (a while_loop needs "
                   "maximum_iterations=)")
        elif not plan.host_fits:
            why = (f"its offloaded tensors need {plan.host_bytes} bytes of host memory, more "
                   f"than the host budget of {plan.host_budget}")
        else:
            why = f"the plan made for it peaks at {plan.predicted_peak} bytes"
        need = "" if plan.min_budget is None or plan.unknown else (
            f"; the smallest budget a plan was found to fit is {plan.min_budget} bytes "
            f"({format_bytes(plan.min_budget)}): try --budget {plan.min_budget}")
        if plan.min_budget is None and not plan.unknown and no_floor_reason(plan):
            need = f"; {no_floor_reason(plan)}"   # (why no --budget helps)
        return f"the plan does not fit the budget of {budget} bytes: {why}{need}"
    return None


def _plan_for(src: Source, budget, batch: int, steps: int, device: str):
    """The memory plan of one training step of `src` (its train op, else its loss and
    gradients, adding gradients when it has none; else its forward outputs)."""
    if not memory_plan_available():
        raise CLIError("the memory planner is not available yet in this rnngraph (Session has "
                       "no memory_plan); it lands with the memory-planner issue")
    if gradient_values(src) is None and "loss" in src.fetches:
        add_gradients(src)
    fetches = [src.fetches["loss"]] if "loss" in src.fetches else []
    train_ops = [src.fetches[k] for k in ("training_op", "train_op", "train") if k in src.fetches]
    fetches += train_ops[:1] or gradient_values(src) or forward_values(src)
    if not fetches:
        raise CLIError(f"{src.what}: nothing to plan (no loss, gradients or outputs found)")
    feed = sample_feed(src.graph, fetches, batch, steps)
    options = {"memory_budget": budget} if budget is not None else {}
    sess = Session(src.graph, device=device, **options)
    return memory_plan(sess, fetches, feed)


def sample_feed(graph, fetches, batch: int, steps: int | None) -> dict:
    """A feed for every placeholder the fetches need: unknown first dims are `batch`, other
    unknown dims `steps` (None: 10); float inputs are small random numbers, int inputs are
    zeros except lengths (placeholders named like '*len*'), which are the full time length.
    `steps` a placeholder fixes otherwise (its second dim) is a CLIError."""
    needed, stack = set(), [v.node for v in fetches]
    while stack:
        n = stack.pop()
        if n not in needed:
            needed.add(n)
            stack.extend(v.node for v in n.inputs)
    placeholders = [n for n in graph.nodes if n in needed and n.op.name == "placeholder"]
    time = steps
    for n in placeholders:
        shape = n.outputs[0].shape
        if len(shape) >= 3 and shape[1] is not None:
            if steps is not None and shape[1] != steps:
                raise CLIError(f"--steps {steps}: the graph fixes its time steps at {shape[1]} "
                               f"(placeholder {n.name!r} has shape {list(shape)}); leave "
                               "--steps out, or build it with the time dimension None")
            time = shape[1]
            break
    steps = steps if steps is not None else 10
    time = time if time is not None else steps
    rng = np.random.default_rng(0)
    feed = {}
    for n in placeholders:
        v = n.outputs[0]
        shape = tuple((batch if i == 0 else steps) if d is None else d
                      for i, d in enumerate(v.shape))
        if np.issubdtype(v.dtype, np.floating):
            feed[v] = rng.normal(0.0, 0.5, size=shape).astype(v.dtype)
        elif "len" in n.name.lower():
            feed[v] = np.full(shape, time, dtype=v.dtype)
        else:
            feed[v] = np.zeros(shape, dtype=v.dtype)
    return feed


def cmd_export(args) -> int:
    """Export the forward graph as ONNX; --check runs it in onnxruntime beside rnngraph."""
    src = load_source(args.source, args.unroll, steps=args.steps)
    fetches = _inference_fetches(src)
    if not fetches:
        raise CLIError(f"{src.what}: no outputs to export (save the model with "
                       "fetches={'logits': logits, ...})")
    sess = Session(src.graph)
    if os.path.exists(args.source):
        for name, value in read(args.source).values.items():   # the saved variable values
            sess.load_variable(name, value)
    else:
        with src.graph.as_default():
            sess.run(rg.global_variables_initializer())
    out = args.output or f"{src.label}.onnx"
    exported = onnx_export(fetches, out, session=sess, opset=args.opset,
                                  route=args.route)
    routes = ", ".join(f"{k}: {v}" for k, v in exported.routes.items()) or "no loops"
    print(f"wrote {out} ({len(exported.model.graph.node)} ONNX nodes; outputs "
          f"{', '.join(exported.outputs)}; {routes})")
    if not args.check:
        return 0
    feed = random_feed(exported, batch=args.batch,
                       steps=args.steps if args.steps is not None else 5)
    errors = onnx_compare(exported, sess, feed)
    for name, err in errors.items():
        print(f"  {name}: max |onnxruntime - rnngraph| = {err:.3g}")
    worst = max(errors.values())
    if worst > args.tolerance:
        print(f"rnngraph export: onnxruntime differs from rnngraph by {worst:.3g} (more than "
              f"--tolerance {args.tolerance:g})", file=sys.stderr)
        return EXIT_ERROR
    print(f"check passed: onnxruntime matches rnngraph to {worst:.3g} on a random batch of "
          f"{args.batch}")
    return 0


def _inference_fetches(src: Source) -> dict:
    """The named forward outputs of a graph (not inputs, weights, gradients or scalar metrics
    such as the loss), else the forward sinks."""
    tainted = _tainted(src.graph)
    named = {k: v for k, v in src.fetches.items()
             if not k.startswith("gradient/") and v.node not in tainted and v.shape != ()
             and v.node.op.name not in ("placeholder", "variable", "constant")}
    if named:
        return named
    return {(v.node.name if len(v.node.outputs) == 1 else v.name): v
            for v in forward_values(src) if v.shape != ()}


def cmd_demo(args) -> int:
    if args.distributed:
        return _demo_distributed(args)
    _show_progress_notes()
    run_demo(cell=args.cell, units=args.units, epochs=args.epochs, unroll=args.unroll,
             device=args.device, out=args.out, seed=args.seed, learning_rate=args.lr,
             batch_size=args.batch_size, budget=args.budget, progress=not args.no_progress,
             dropout=args.dropout, resume=args.resume, checkpoint_every=args.checkpoint_every,
             logdir=args.logdir)
    return 0


def _demo_distributed(args) -> int:
    """`rnngraph demo --distributed`, run as `mpiexec -n N rnngraph demo --distributed`."""
    others = [f"--{k.replace('_', '-')}" for k, off in (("device", "cpu"), ("budget", None),
              ("dropout", 0.0), ("resume", False)) if getattr(args, k, off) != off]
    if others:
        raise CLIError(f"demo --distributed: {', '.join(others)} not supported with it (it "
                       "trains on the CPU, one process per rank)")
    run_distributed_demo(cell=args.cell, units=args.units, epochs=args.epochs,
                         unroll=args.unroll, seed=args.seed, learning_rate=args.lr,
                         batch_size=args.batch_size, progress=not args.no_progress,
                         out=args.out)
    return 0


def _show_progress_notes() -> None:
    """The command is the application: it shows the library's INFO notes (such as "compiling
    ... with the accelerated CPU backend", logged before a compile that can take seconds) on
    stderr, where the progress bar is."""
    log = logging.getLogger("rnngraph")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


# --- the parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rnngraph", description="A dataflow-graph compiler for recurrent networks: "
                "train the demo, print or draw graphs, show memory plans.",
                epilog="Run 'rnngraph COMMAND --help' for a command's options.")
    p.add_argument("--version", action="version", version=f"rnngraph {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def source_args(sp, grad_help):
        sp.add_argument("source", metavar="FILE|EXAMPLE",
                        help="a graph saved with rg.save (e.g. out/model.npz), or a built-in "
                             "example ('rnngraph examples' lists them)")
        sp.add_argument("--unroll", choices=UNROLLS, default=None,
                        help="for examples: dynamic_rnn (one loop node, the default) or "
                             "static_rnn (one cell copy per step)")
        if grad_help:
            sp.add_argument("--grad", action="store_true", help=grad_help)

    d = sub.add_parser("demo", help="train the book's sequence classifier on handwritten digits",
                       description="Build the reference book's sequence classifier (each image "
                       "row is one time step, an RNN cell, then a dense layer to 10 classes), "
                       "train it with Adam on scikit-learn's 8x8 digits, print the test "
                       "accuracy, and write the trained model, the graph and gradient-graph "
                       "diagrams and the memory plan into --out.")
    d.add_argument("--cell", choices=CELLS, default="basic",
                   help="the recurrent cell (default: basic, the book's BasicRNNCell)")
    d.add_argument("--units", type=_positive, default=None,
                   help=f"recurrent units (default: {DEFAULTS['units']})")
    d.add_argument("--epochs", type=_positive, default=None,
                   help=f"training epochs (default: {DEFAULTS['epochs']})")
    d.add_argument("--unroll", choices=UNROLLS, default="dynamic",
                   help="dynamic_rnn (one loop node; default) or static_rnn (one cell per step)")
    d.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help="cpu (NumPy; default), gpu (CuPy, needs CUDA) or auto")
    d.add_argument("--out", default="out", metavar="DIR",
                   help="where to write model.npz, the diagrams and the memory plan "
                        "(default: ./out)")
    d.add_argument("--seed", type=_nonneg, default=None,
                   help=f"seeds the data split, the weights and the shuffling "
                        f"(default: {DEFAULTS['seed']})")
    d.add_argument("--lr", type=_learning_rate, default=None,
                   help="Adam's learning rate (default: " + ", ".join(
                       f"{k} {v:g}" for k, v in DEFAULTS["learning_rate"].items()) + ")")
    d.add_argument("--batch-size", type=_positive, default=None,
                   help=f"mini-batch size (default: {DEFAULTS['batch_size']})")
    d.add_argument("--budget", type=parse_bytes, default=None,
                   help="device-memory budget for the memory plan, e.g. 64MB")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--distributed", action="store_true",
                   help="train data-parallel, one process per rank: run it as 'mpiexec -n 2 "
                        "rnngraph demo --distributed' (needs the mpi extra); prints each "
                        "rank's throughput and the scaling efficiency; rank 0 writes "
                        "model.npz")
    d.add_argument("--dropout", type=_dropout_rate, default=0.0, metavar="RATE",
                   help="train with DropoutWrapper on the cell's inputs, dropping this fraction "
                        "(e.g. 0.2; default: 0, no dropout); evaluation keeps everything")
    d.add_argument("--checkpoint-every", type=_positive, default=None, metavar="N",
                   help=f"save a checkpoint in OUT/checkpoints every N epochs and after the "
                        f"last (default: {DEFAULTS['checkpoint_every']})")
    d.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in OUT/checkpoints up to --epochs "
                        "(same model options as the first run)")
    d.add_argument("--logdir", default=None, metavar="DIR",
                   help="also write TensorBoard event files (the graph, loss and accuracy per "
                        "epoch) into DIR (needs tensorboardX: pip install 'rnngraph[tensorboard]')")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("render", help="draw a saved graph or a built-in example",
                       description="Draw a graph with graphviz: the forward graph, or with "
                       "--grad the gradient graph (backpropagation through time).")
    source_args(r, "draw the gradient graph (adds the gradients of the loss when the graph "
                   "has none), collapsed: one box per name scope, --expand opens one")
    r.add_argument("-o", "--output", metavar="PATH",
                   help="output file; its suffix picks the format: .svg .png .pdf .dot .html "
                        "(default: NAME.svg, NAME_grad.svg with --grad)")
    r.add_argument("--format", choices=("svg", "png", "pdf", "dot", "html"), default=None,
                   help="output format when -o has no suffix (default: svg)")
    r.add_argument("--html", action="store_true",
                   help="write one self-contained HTML page: the diagram with pan/zoom, click "
                        "a folded scope to open it (no network needed)")
    r.add_argument("--max-depth", type=_nonneg, default=None,
                   help="fold name scopes deeper than this into one box (overrides the "
                        "collapsed view of --grad)")
    r.add_argument("--expand", action="append", metavar="SCOPE", default=None,
                   help="open this name scope in the collapsed view (repeatable), e.g. "
                        "--expand gradients/rnn")
    r.add_argument("--all-steps", action="store_true",
                   help="draw every step of a static unroll (default: fold the middle ones)")
    r.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default=None,
                   help="layout direction (default: LR for a static unroll's timeline, else "
                        "TB, top to bottom)")
    r.add_argument("--title", default=None, help="diagram title ('' for none)")
    r.add_argument("--plan", action="store_true",
                   help="colour the tensors saved for the backward pass by the memory plan's "
                        "placement (device / host / recompute)")
    r.add_argument("--budget", type=parse_bytes, default=None,
                   help="plan within this device-memory budget, e.g. 64MB (implies --plan)")
    r.add_argument("--batch", type=_positive, default=32, help=argparse.SUPPRESS)
    r.add_argument("--steps", type=_positive, default=None, help=argparse.SUPPRESS)
    r.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                   help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_render)

    pr = sub.add_parser("print", help="print the IR text of a saved graph or an example",
                        description="Print a graph's IR: one line per node, loop bodies "
                        "indented under their loop node.")
    source_args(pr, "add the gradients of the loss first (examples and gradient-free files)")
    pr.add_argument("--no-locations", action="store_true",
                    help="leave out the source line that built each node")
    pr.set_defaults(func=cmd_print)

    pl = sub.add_parser("plan", help="show the memory plan of a training step",
                        description="Plan where the tensors saved for the backward pass live "
                        "(kept on the device, offloaded to host memory, or recomputed) for one "
                        "training step of a saved graph or an example, within a device-memory "
                        "budget.")
    source_args(pl, None)
    pl.add_argument("--budget", type=parse_bytes, default=None,
                    help="device-memory budget, e.g. 64MB, 1.5GB (binary units: 1MB = 2^20 "
                         "bytes)")
    pl.add_argument("--batch", type=_positive, default=32,
                    help="batch size of the sample input (default: 32)")
    pl.add_argument("--steps", type=_positive, default=None,
                    help="time steps: an example's (default: its own), or where a saved graph "
                         "leaves them open (default: 10)")
    pl.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                    help="the device to plan for (default: cpu)")
    pl.add_argument("-o", "--output", metavar="PATH", help="write the plan to a file")
    pl.set_defaults(func=cmd_plan)

    xp = sub.add_parser("export", help="export a saved graph or an example as ONNX",
                        description="Export the forward (inference) graph of a saved model or "
                        "a built-in example as an ONNX model, its variables as initializers. "
                        "Needs the onnx extra: pip install rnngraph[onnx].")
    source_args(xp, None)
    xp.add_argument("-o", "--output", metavar="PATH", help="the .onnx file (default: NAME.onnx)")
    xp.add_argument("--check", action="store_true",
                    help="run the model in onnxruntime on a random batch and compare with "
                    "rnngraph, printing the largest error")
    xp.add_argument("--route", choices=("auto", "rnn", "loop"), default="auto",
                    help="loops as ONNX's RNN/LSTM/GRU ops where the cell allows (auto), "
                    "always (rnn), or always as Scan/Loop (loop)")
    xp.add_argument("--opset", type=_int_at_least(17, "--opset"), default=None,
                    help="the ONNX opset (default 18)")
    xp.add_argument("--batch", type=_positive, default=3, help="--check's batch size")
    xp.add_argument("--steps", type=_positive, default=None,
                    help="an example's time steps; --check's where a saved graph leaves them "
                         "open (default: 5)")
    xp.add_argument("--tolerance", type=float, default=1e-4,
                    help="--check fails above this error (default 1e-4)")
    xp.set_defaults(func=cmd_export)

    ex = sub.add_parser("examples", help="list the built-in example graphs",
                        description="List the built-in example graphs.")
    ex.set_defaults(func=cmd_examples)
    return p


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and msg.startswith("'") and msg.endswith("'"):
        msg = msg[1:-1]
    if isinstance(exc, OSError) and not exc.filename and exc.args and isinstance(exc.args[0], str):
        return msg
    if isinstance(exc, FileNotFoundError) and exc.filename:
        msg = f"no such file: {exc.filename}"
    elif isinstance(exc, OSError) and exc.filename and exc.strerror:
        msg = f"{exc.filename}: {exc.strerror}"
    return msg or type(exc).__name__


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    name = f"rnngraph {args.command}"
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rnngraph print big.npz | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # noqa: BLE001  one line, no traceback
        if os.environ.get("RNNGRAPH_DEBUG"):
            raise
        known = (CLIError, ValueError, TypeError, LookupError, OSError, RuntimeError,
                 RnnGraphError, MemoryError)
        if isinstance(exc, known):
            print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
        else:
            print(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)} "
                  "(set RNNGRAPH_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
