"""The demo: the reference book's sequence classifier ("Training a Sequence Classifier"), on
real handwritten digits that ship with scikit-learn, so it runs offline in seconds.

The book reads each 28x28 MNIST image as 28 time steps of 28 pixels, runs a BasicRNNCell of 150
units over them with dynamic_rnn, and classifies the final state with a dense layer of 10
units, trained with Adam on the sparse softmax cross-entropy. Here the images are scikit-learn's
8x8 digits (1797 of them, `load_digits`): 8 time steps of 8 pixels, pixels scaled to [0, 1].

    from rnngraph.demo import build_classifier, load_digit_sequences, train
    model = build_classifier(cell="basic", n_neurons=150)
    data = load_digit_sequences(seed=42)
    result = train(model, data, n_epochs=30)
    print(result.test_accuracy)

`run_demo` does all of it and writes the diagrams, the memory plan and the trained model.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import rnngraph as rg

from . import ir, nn
from .io import save
from .ir.graph import Graph
from .render import render
from .runtime.devices import get_device
from .runtime.session import Session

CELLS = ("basic", "lstm", "gru")
UNROLLS = ("dynamic", "static")
# defaults tuned so the default run (basic cell) passes 95% test accuracy in seconds
DEFAULTS = {"units": 150, "epochs": 40, "batch_size": 64, "seed": 42,
            "learning_rate": {"basic": 0.001, "lstm": 0.003, "gru": 0.002}}


# --- the model -----------------------------------------------------------------------------------
@dataclass
class Classifier:
    """The classifier's graph and the handles a training loop needs."""
    graph: Graph
    X: ir.Value
    y: ir.Value
    logits: ir.Value
    loss: ir.Value
    accuracy: ir.Value
    training_op: ir.Value
    grads_and_vars: list
    cell: str
    unroll: str
    n_neurons: int
    learning_rate: float

    @property
    def gradients(self) -> list:
        """d loss / d variable for every trainable variable (what training_op applies)."""
        return [g for g, _ in self.grads_and_vars]

    def fetches(self) -> dict:
        """Named values saved with the model (so `rnngraph plan model.npz` finds them)."""
        named = {"X": self.X, "y": self.y, "logits": self.logits, "loss": self.loss,
                 "accuracy": self.accuracy, "training_op": self.training_op}
        named.update({f"gradient/{v.node.name}": g for g, v in self.grads_and_vars})
        return named

    def describe(self) -> str:
        cell = {"basic": "BasicRNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}[self.cell]
        how = ("dynamic_rnn (one loop node)" if self.unroll == "dynamic"
               else f"static_rnn ({self.X.shape[1]} unrolled steps)")
        return f"{cell}({self.n_neurons}), {how} -> dense(10); Adam(lr={self.learning_rate:g})"


def make_cell(kind: str, n_neurons: int):
    if kind == "basic":
        return nn.BasicRNNCell(num_units=n_neurons)
    if kind == "lstm":
        return nn.LSTMCell(num_units=n_neurons)
    if kind == "gru":
        return nn.GRUCell(num_units=n_neurons)
    raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {kind!r}")


def build_classifier(cell: str = "basic", n_neurons: int = 150, n_steps: int = 8,
                     n_inputs: int = 8, n_outputs: int = 10, unroll: str = "dynamic",
                     learning_rate: float | None = None, graph: Graph | None = None) -> Classifier:
    """The book's classifier, line for line with rg in place of tf, in `graph` (default: a
    fresh graph)."""
    if unroll not in UNROLLS:
        raise ValueError(f"unroll must be one of {', '.join(UNROLLS)}, got {unroll!r}")
    if learning_rate is None:
        learning_rate = DEFAULTS["learning_rate"].get(cell, 0.001)
    graph = graph if graph is not None else rg.Graph()
    with graph.as_default():
        X = rg.placeholder(rg.float32, [None, n_steps, n_inputs], name="X")
        y = rg.placeholder(rg.int32, [None], name="y")

        rnn_cell = make_cell(cell, n_neurons)
        if unroll == "dynamic":
            outputs, states = rg.nn.dynamic_rnn(rnn_cell, X, dtype=rg.float32)
        else:  # the book's static version: a Python list of n_steps tensors [batch, n_inputs]
            X_seqs = rg.unstack(rg.transpose(X, perm=[1, 0, 2]))
            outputs, states = rg.nn.static_rnn(rnn_cell, X_seqs, dtype=rg.float32)
        final = states.h if cell == "lstm" else states  # an LSTM's state is (c, h)

        logits = rg.layers.dense(final, n_outputs, name="dense")
        xentropy = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        loss = rg.reduce_mean(xentropy, name="loss")
        optimizer = rg.train.AdamOptimizer(learning_rate=learning_rate)
        grads_and_vars = optimizer.compute_gradients(loss)  # = optimizer.minimize(loss),
        training_op = optimizer.apply_gradients(grads_and_vars)  # keeping the gradients
        correct = rg.nn.in_top_k(logits, y, 1)
        accuracy = rg.reduce_mean(rg.cast(correct, rg.float32), name="accuracy")
    return Classifier(graph, X, y, logits, loss, accuracy, training_op, grads_and_vars, cell,
                      unroll, n_neurons, learning_rate)


# --- the data ------------------------------------------------------------------------------------
@dataclass
class Digits:
    X_train: np.ndarray  # [n, 8, 8] float32: image rows are time steps
    y_train: np.ndarray  # [n] int32
    X_test: np.ndarray
    y_test: np.ndarray


def load_digit_sequences(seed: int = 42, test_size: float = 0.2) -> Digits:
    """scikit-learn's 8x8 handwritten digits as sequences of 8 rows, split (stratified, seeded)
    into a training set and a held-out test set."""
    try:
        from sklearn.datasets import load_digits   # optional: scikit-learn (the demo extra)
        from sklearn.model_selection import train_test_split   # optional: as above
    except ImportError:
        raise RuntimeError("the demo needs scikit-learn for its digits data set: "
                           "pip install 'rnngraph[demo]'") from None
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)  # [1797, 8, 8], pixels 0..16 -> 0..1
    y = digits.target.astype(np.int32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y)
    return Digits(X_train, y_train, X_test, y_test)


# --- training ------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    test_accuracy: float
    train_accuracy: float
    final_loss: float
    seconds: float
    epochs: int
    session: object
    history: list = field(default_factory=list)  # (epoch, mean loss, train acc, test acc)


def train(model: Classifier, data: Digits, n_epochs: int = 40, batch_size: int = 64,
          seed: int = 42, device="cpu", progress: bool = True, session=None,
          blas_threads: int | None = 1, **session_options) -> TrainResult:
    """Mini-batch training as in the book (shuffled each epoch), with a tqdm progress bar
    showing the epoch's running loss and accuracy and the last test accuracy.

    `blas_threads`: BLAS threads while training (None: leave as is). The default, 1, is the
    fastest for these small matrices: a [64, 150] @ [150, 150] product is too small to share
    between threads, and on a busy machine multi-threaded BLAS can be several times slower."""
    with _blas_limit(blas_threads):
        return _train(model, data, n_epochs, batch_size, seed, device, progress, session,
                      session_options)


def _blas_limit(n: int | None):
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # optional: installed with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _train(model, data, n_epochs, batch_size, seed, device, progress, session, session_options):
    if n_epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch size must be >= 1")
    sess = session or rg.Session(model.graph, device=device, seed=seed, **session_options)
    rng = np.random.default_rng(seed)
    n = len(data.X_train)
    steps_per_epoch = -(-n // batch_size)
    bar = _progress(n_epochs * steps_per_epoch, progress)
    test_feed = {model.X: data.X_test, model.y: data.y_test}
    history, test_acc = [], float("nan")
    start = time.perf_counter()
    try:
        for epoch in range(n_epochs):
            order = rng.permutation(n)
            losses, accs, sizes = [], [], []
            bar.set_description(f"epoch {epoch + 1}/{n_epochs}")
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                loss_val, acc_val, _ = sess.run(
                    [model.loss, model.accuracy, model.training_op],
                    feed_dict={model.X: data.X_train[idx], model.y: data.y_train[idx]})
                losses.append(float(loss_val))
                accs.append(float(acc_val))
                sizes.append(len(idx))
                bar.set_postfix(_postfix(losses, accs, sizes, test_acc), refresh=False)
                bar.update(1)
            test_acc = float(sess.run(model.accuracy, feed_dict=test_feed))
            history.append((epoch + 1, _mean(losses, sizes), _mean(accs, sizes), test_acc))
            bar.set_postfix(_postfix(losses, accs, sizes, test_acc))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    train_acc = float(sess.run(model.accuracy, feed_dict={model.X: data.X_train,
                                                         model.y: data.y_train}))
    return TrainResult(test_acc, train_acc, history[-1][1], seconds, n_epochs, sess, history)


def _mean(xs, ws) -> float:
    return float(np.average(xs, weights=ws))


def _postfix(losses, accs, sizes, test_acc) -> dict:
    out = {"loss": f"{_mean(losses, sizes):.3f}", "acc": f"{_mean(accs, sizes):.3f}"}
    if not np.isnan(test_acc):
        out["test"] = f"{test_acc:.3f}"
    return out


class _NoBar:
    def set_description(self, *a, **k): pass
    def set_postfix(self, *a, **k): pass
    def update(self, *a, **k): pass
    def close(self): pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm   # optional: the progress bar
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="batch", file=sys.stderr, dynamic_ncols=True, leave=True)


# --- outputs: diagrams and memory plan ------------------------------------------------------------
def render_available() -> bool:
    try:
        from .render import render  # noqa: F401  (a probe from before rnngraph.render shipped)
    except ImportError:
        return False
    return True


def write_diagram(values_or_graph, path: Path, title: str | None = None, **opts) -> str:
    """Draw with rnngraph.render; without graphviz's `dot`, fall back to the DOT text file."""
    kwargs = dict(opts)
    if title is not None:
        kwargs["title"] = title
    try:
        return render(values_or_graph, str(path), **kwargs)
    except RuntimeError as exc:  # graphviz's `dot` missing: keep the DOT text
        if "dot" not in str(exc):
            raise
        return render(values_or_graph, str(Path(path).with_suffix(".dot")), format="dot",
                      **kwargs)


def memory_plan_available(session=None) -> bool:
    return hasattr(session if session is not None else Session, "memory_plan")


def memory_plan(session, fetches, feed_dict=None):
    """`session.memory_plan(fetches, feed_dict)` (the budget is the session's memory_budget);
    None when the memory planner is not part of this rnngraph yet."""
    if not memory_plan_available(session):
        return None
    return session.memory_plan(fetches, feed_dict=feed_dict)


# --- the whole demo --------------------------------------------------------------------------------
@dataclass
class DemoResult:
    model: Classifier
    result: TrainResult
    files: list  # (path, what)
    notes: list  # one-line messages (e.g. a part not available yet)
    data: Digits


def run_demo(cell: str = "basic", units: int | None = None, epochs: int | None = None,
             unroll: str = "dynamic", device: str = "cpu", out: str | Path = "out",
             seed: int | None = None, learning_rate: float | None = None,
             batch_size: int | None = None, budget: int | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> DemoResult:
    """Build, train and evaluate the classifier, then write model.npz, graph.svg,
    gradients.svg and memory_plan.txt into `out`. Returns what it did; `log` gets the lines."""
    units = DEFAULTS["units"] if units is None else units
    epochs = DEFAULTS["epochs"] if epochs is None else epochs
    seed = DEFAULTS["seed"] if seed is None else seed
    batch_size = DEFAULTS["batch_size"] if batch_size is None else batch_size
    dev = get_device(device)  # fails early, with a clear message, for a missing GPU
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"the output directory {out} exists and is not a directory")
    try:  # before training: fail fast when it cannot be made
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeError(f"cannot create the output directory {out}: "
                           f"{exc.strerror or exc}") from None

    data = load_digit_sequences(seed=seed)
    model = build_classifier(cell=cell, n_neurons=units, unroll=unroll,
                             learning_rate=learning_rate)
    n_vars = sum(int(np.prod(v.shape)) for _, v in model.grads_and_vars)
    log("rnngraph demo: the book's sequence classifier on real handwritten digits")
    log(f"  data   scikit-learn digits: {len(data.X_train)} training / {len(data.X_test)} test "
        f"images; each 8x8 image is 8 time steps of 8 pixels")
    log(f"  model  {model.describe()}, batch {batch_size}, {epochs} epochs, seed {seed}")
    log(f"  graph  {model.graph.total_nodes()} nodes ({len(model.graph)} top-level), "
        f"{n_vars:,} trainable parameters, device {dev.name}")

    budget_opt = {"memory_budget": budget} if budget is not None else {}
    result = train(model, data, n_epochs=epochs, batch_size=batch_size, seed=seed, device=dev,
                   progress=progress, **budget_opt)
    correct = int(round(result.test_accuracy * len(data.y_test)))
    log(f"test accuracy: {result.test_accuracy:.2%} ({correct}/{len(data.y_test)} held-out "
        f"digits) after {epochs} epoch{'s' if epochs != 1 else ''} in {result.seconds:.1f} s "
        f"(train accuracy {result.train_accuracy:.2%}, final loss {result.final_loss:.4f})")

    files, notes = [], []
    path = save(out / "model.npz", session=result.session, fetches=model.fetches())
    files.append((path, "the trained graph and weights (try: rnngraph print " + path + ")"))

    batch = {model.X: data.X_train[:batch_size], model.y: data.y_train[:batch_size]}
    plan = memory_plan(result.session, [model.loss, model.accuracy, model.training_op], batch)
    if plan is None:
        notes.append("memory plan: not available yet (the memory planner has not landed)")
    else:
        text = str(plan)
        (out / "memory_plan.txt").write_text(text + ("\n" if not text.endswith("\n") else ""))

    if render_available():
        p = write_diagram([model.logits, model.loss, model.accuracy], out / "graph.svg",
                          title=f"forward graph: {model.describe()}")
        files.append((p, "the model's graph"))
        p = write_diagram(model.gradients, out / "gradients.svg",
                          title="gradient graph: d loss / d weights (backpropagation through "
                                "time)", **({"plan": plan} if plan is not None else {}))
        files.append((p, "the gradient graph (backpropagation through time)"
                      + (", saved tensors coloured by the memory plan" if plan is not None
                         else "")))
    else:
        notes.append("diagrams: not available yet (rnngraph.render has not landed)")
    if plan is not None:
        files.append((str(out / "memory_plan.txt"),
                      f"the memory plan of one training step (batch {batch_size}): where the "
                      "tensors saved for backpropagation live"))
    width = max(len(p) for p, _ in files)
    log(f"wrote {len(files)} files:")
    for p, what in files:
        log(f"  {p:<{width}}  {what}")
    for note in notes:
        log(note)
    return DemoResult(model, result, files, notes, data)
