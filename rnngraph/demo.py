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

`run_demo` does all of it and writes the diagrams, the memory plan and the trained model,
logs one line per epoch, keeps `history.csv` and `history.png` (loss and accuracy per epoch;
the PNG needs matplotlib, the `plot` extra) and a checkpoint every few epochs in
`checkpoints/`, from which `run_demo(resume=True)` (`rnngraph demo --resume`) carries on: the
resumed run ends with the same weights as an uninterrupted one. `dropout=0.2` trains with
TF1's DropoutWrapper on the cell's inputs (the book's dropout example), its keep probability a
`placeholder_with_default(1.0, [])` that training feeds and evaluation leaves at 1.
"""
from __future__ import annotations

import contextlib
import os
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
from .summary import FileWriter
from .train.history import History
from .train.saver import Saver, latest_checkpoint
from .runtime.devices import get_device
from .runtime.session import Session
from . import distributed as dist

CELLS = ("basic", "lstm", "gru")
UNROLLS = ("dynamic", "static")
# defaults tuned so the default run (basic cell) passes 95% test accuracy in seconds
DEFAULTS = {"units": 150, "epochs": 40, "batch_size": 64, "seed": 42,
            "learning_rate": {"basic": 0.001, "lstm": 0.003, "gru": 0.002},
            "checkpoint_every": 5}
METRICS = ["loss", "train_accuracy", "test_accuracy", "seconds"]


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
    keep_prob: ir.Value | None = None   # placeholder_with_default(1.0): fed 1 - dropout to train
    dropout: float = 0.0
    global_step: ir.Value | None = None
    saver: Saver | None = None

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
        drop = f" with input dropout {self.dropout:g}" if self.dropout else ""
        return (f"{cell}({self.n_neurons}){drop}, {how} -> dense(10); "
                f"Adam(lr={self.learning_rate:g})")


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
                     learning_rate: float | None = None, graph: Graph | None = None,
                     dropout: float = 0.0, distributed: bool = False) -> Classifier:
    """The book's classifier, line for line with rg in place of tf, in `graph` (default: a
    fresh graph). `dropout` (a rate in [0, 1)) wraps the cell in a DropoutWrapper whose input
    keep probability is a placeholder_with_default(1.0): `train` feeds 1 - dropout."""
    if unroll not in UNROLLS:
        raise ValueError(f"unroll must be one of {', '.join(UNROLLS)}, got {unroll!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
            not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a rate in [0, 1), got {dropout!r}")
    if learning_rate is None:
        learning_rate = DEFAULTS["learning_rate"].get(cell, 0.001)
    graph = graph if graph is not None else rg.Graph()
    with graph.as_default():
        X = rg.placeholder(rg.float32, [None, n_steps, n_inputs], name="X")
        y = rg.placeholder(rg.int32, [None], name="y")

        rnn_cell = make_cell(cell, n_neurons)
        keep_prob = None
        if dropout:   # the book's dropout example: fed while training, 1.0 when evaluating
            keep_prob = rg.placeholder_with_default(1.0, [], name="keep_prob")
            rnn_cell = rg.nn.rnn_cell.DropoutWrapper(rnn_cell, input_keep_prob=keep_prob)
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
        if distributed:   # one allreduce of every gradient per step (rnngraph.distributed)
            optimizer = dist.DistributedOptimizer(optimizer)
        global_step = rg.train.get_or_create_global_step()
        grads_and_vars = optimizer.compute_gradients(loss)  # = optimizer.minimize(loss),
        training_op = optimizer.apply_gradients(grads_and_vars,  # keeping the gradients
                                                global_step=global_step)
        correct = rg.nn.in_top_k(logits, y, 1)
        accuracy = rg.reduce_mean(rg.cast(correct, rg.float32), name="accuracy")
        saver = Saver(max_to_keep=3)
    return Classifier(graph, X, y, logits, loss, accuracy, training_op, grads_and_vars, cell,
                      unroll, n_neurons, learning_rate, keep_prob, float(dropout), global_step,
                      saver)


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
    table: History | None = None    # every epoch's row (a resumed run's earlier ones too)


def train(model: Classifier, data: Digits, n_epochs: int = 40, batch_size: int = 64,
          seed: int = 42, device="cpu", progress: bool = True, session=None,
          blas_threads: int | None = 1, start_epoch: int = 0, history: History | None = None,
          on_epoch: Callable | None = None, **session_options) -> TrainResult:
    """Mini-batch training as in the book (shuffled each epoch), with a tqdm progress bar
    showing the epoch's running loss and accuracy and the last test accuracy.

    Epoch e's shuffle depends on (seed, e) only, so a run resumed at `start_epoch` (its
    variables restored into `session`) sees the batches an uninterrupted run would. Each
    finished epoch is added to `history` (a History of METRICS) and `on_epoch(epoch, session,
    history)` is called, between progress-bar updates (a place to log, checkpoint, plot).
    A model built with dropout is fed keep_prob = 1 - dropout while training.

    `blas_threads`: BLAS threads while training (None: leave as is). The default, 1, is the
    fastest for these small matrices: a [64, 150] @ [150, 150] product is too small to share
    between threads, and on a busy machine multi-threaded BLAS can be several times slower."""
    with _blas_limit(blas_threads):
        return _train(model, data, n_epochs, batch_size, seed, device, progress, session,
                      session_options, start_epoch, history, on_epoch)


def _blas_limit(n: int | None):
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # optional: installed with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _train(model, data, n_epochs, batch_size, seed, device, progress, session, session_options,
           start_epoch=0, table=None, on_epoch=None):
    if n_epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch size must be >= 1")
    if not 0 <= start_epoch < n_epochs:
        raise ValueError(f"start_epoch must be in [0, {n_epochs}), got {start_epoch}")
    sess = session or rg.Session(model.graph, device=device, seed=seed, **session_options)
    table = table if table is not None else History(METRICS)
    n = len(data.X_train)
    steps_per_epoch = -(-n // batch_size)
    bar = _progress((n_epochs - start_epoch) * steps_per_epoch, progress)
    test_feed = {model.X: data.X_test, model.y: data.y_test}
    train_extra = {}
    if model.keep_prob is not None and model.dropout:
        train_extra[model.keep_prob] = np.float32(1.0 - model.dropout)
    history, test_acc = [], float("nan")
    start = time.perf_counter()
    try:
        for epoch in range(start_epoch, n_epochs):
            began = time.perf_counter()
            order = np.random.default_rng([seed, epoch]).permutation(n)
            losses, accs, sizes = [], [], []
            bar.set_description(f"epoch {epoch + 1}/{n_epochs}")
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                loss_val, acc_val, _ = sess.run(
                    [model.loss, model.accuracy, model.training_op],
                    feed_dict={model.X: data.X_train[idx], model.y: data.y_train[idx],
                               **train_extra})
                losses.append(float(loss_val))
                accs.append(float(acc_val))
                sizes.append(len(idx))
                bar.set_postfix(_postfix(losses, accs, sizes, test_acc), refresh=False)
                bar.update(1)
            test_acc = _accuracy(sess, model, test_feed, batch_size)
            history.append((epoch + 1, _mean(losses, sizes), _mean(accs, sizes), test_acc))
            table.add(epoch + 1, loss=history[-1][1], train_accuracy=history[-1][2],
                      test_accuracy=test_acc, seconds=time.perf_counter() - began)
            bar.set_postfix(_postfix(losses, accs, sizes, test_acc))
            if on_epoch is not None:
                bar.clear()
                on_epoch(epoch + 1, sess, table)
                bar.refresh()
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    train_acc = _accuracy(sess, model, {model.X: data.X_train, model.y: data.y_train},
                          batch_size)
    return TrainResult(test_acc, train_acc, history[-1][1], seconds, n_epochs - start_epoch,
                       sess, history, table)


def _accuracy(sess, model, feed, batch_size: int) -> float:
    """The model's accuracy over a whole set: in one run, or under a memory budget (sized for
    the training batch) in runs of batch_size rows."""
    if getattr(sess, "memory_budget", None) is None:
        return float(sess.run(model.accuracy, feed_dict=feed))
    n = len(feed[model.X])
    accs, sizes = [], []
    for i in range(0, n, batch_size):
        part = {k: v[i:i + batch_size] for k, v in feed.items()}
        accs.append(float(sess.run(model.accuracy, feed_dict=part)))
        sizes.append(min(batch_size, n - i))
    return _mean(accs, sizes)


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
    def clear(self, *a, **k): pass
    def refresh(self, *a, **k): pass
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
             log: Callable[[str], None] = print, dropout: float = 0.0, resume: bool = False,
             checkpoint_every: int | None = None, accelerate="auto",
             logdir: str | Path | None = None) -> DemoResult:
    """Build, train and evaluate the classifier, then write model.npz, graph.svg,
    gradients.svg and memory_plan.txt into `out`. Returns what it did; `log` gets the lines.

    While training: one log line per epoch, `history.csv` rewritten after every epoch,
    `history.png` (matplotlib) and a checkpoint in `out/checkpoints/` every `checkpoint_every`
    epochs and after the last. `resume=True` restores the latest checkpoint there (weights,
    Adam's moments, the global step, the dropout masks' run counter) and trains the remaining
    epochs, continuing history.csv; the model options must be the ones of the first run. With
    `accelerate=False` or True (see Session) the resumed run ends with exactly the weights of an
    uninterrupted one; with "auto" a new session's first runs use NumPy kernels, which round
    float32 tanh and sigmoid differently from the accelerated ones. `logdir`: also write the
    graph and each epoch's metrics as TensorBoard event files there (rg.summary.FileWriter,
    the `tensorboard` extra)."""
    checkpoint_every = DEFAULTS["checkpoint_every"] if checkpoint_every is None \
        else checkpoint_every
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or \
            checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
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
                             learning_rate=learning_rate, dropout=dropout)
    ckpt_dir = out / "checkpoints"
    start_epoch, table, session = 0, History(METRICS), None
    if resume:
        start_epoch, table, session = _resume(model, ckpt_dir, out / "history.csv", epochs, dev,
                                              seed, budget, accelerate)
    n_vars = sum(int(np.prod(v.shape)) for _, v in model.grads_and_vars)
    log("rnngraph demo: the book's sequence classifier on real handwritten digits")
    log(f"  data   scikit-learn digits: {len(data.X_train)} training / {len(data.X_test)} test "
        f"images; each 8x8 image is 8 time steps of 8 pixels")
    log(f"  model  {model.describe()}, batch {batch_size}, {epochs} epochs, seed {seed}")
    log(f"  graph  {model.graph.total_nodes()} nodes ({len(model.graph)} top-level), "
        f"{n_vars:,} trainable parameters, device {dev.name}")

    if resume:
        log(f"  resume from {latest_checkpoint(ckpt_dir)}: epochs {start_epoch + 1} to {epochs}")
    ckpt_dir.mkdir(exist_ok=True)
    plot_notes = []
    writer = None
    if logdir is not None:
        try:
            writer = FileWriter(str(logdir), model.graph)
        except ImportError as exc:   # tensorboardX missing: say so in one line
            raise RuntimeError(f"--logdir: {exc}") from None

    def on_epoch(epoch, sess, history):
        log(history.line(-1, total=epochs))
        if writer is not None:
            row = history.rows[-1]
            writer.add_summary({m: np.float64(row[m]) for m in METRICS}, epoch)
            writer.flush()
        history.write_csv(out / "history.csv")
        if epoch % checkpoint_every == 0 or epoch == epochs:
            model.saver.save(sess, str(ckpt_dir / "model.ckpt"), global_step=epoch)
            if not history.plot(out / "history.png", title=model.describe()) and not plot_notes:
                plot_notes.append("history.png: not drawn (matplotlib is not installed: "
                                  "pip install 'rnngraph[plot]')")

    budget_opt = {"memory_budget": budget} if budget is not None else {}
    log("  compiling the graph and its kernels before the first batch (tens of seconds on a "
        "first run; later runs reuse the kernel cache)")
    result = train(model, data, n_epochs=epochs, batch_size=batch_size, seed=seed, device=dev,
                   progress=progress, session=session, start_epoch=start_epoch, history=table,
                   on_epoch=on_epoch, accelerate=accelerate, **budget_opt)
    if writer is not None:
        writer.close()
    correct = int(round(result.test_accuracy * len(data.y_test)))
    log(f"test accuracy: {result.test_accuracy:.2%} ({correct}/{len(data.y_test)} held-out "
        f"digits) after {epochs} epoch{'s' if epochs != 1 else ''} in {result.seconds:.1f} s "
        f"(train accuracy {result.train_accuracy:.2%}, final loss {result.final_loss:.4f})")

    files, notes = [], list(plot_notes)
    files.append((str(out / "history.csv"), "loss and accuracy per epoch"))
    if (out / "history.png").is_file() and not plot_notes:
        files.append((str(out / "history.png"), "their plot"))
    files.append((latest_checkpoint(ckpt_dir), "the last checkpoint (rnngraph demo --resume "
                  "continues from the latest one)"))
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


def _resume(model, ckpt_dir: Path, history_csv: Path, epochs: int, dev, seed, budget,
            accelerate):
    """(first epoch to run, the history so far, a session holding the checkpoint's values)."""
    prefix = latest_checkpoint(ckpt_dir)
    if prefix is None:
        raise RuntimeError(f"--resume: no checkpoint in {ckpt_dir} (run the demo without "
                           "--resume first, with the same --out)")
    done = int(prefix.rsplit("-", 1)[1])
    if done >= epochs:
        raise RuntimeError(f"--resume: the latest checkpoint ({prefix}) is from epoch {done}; "
                           f"ask for more than {done} --epochs to continue")
    budget_opt = {"memory_budget": budget} if budget is not None else {}
    sess = rg.Session(model.graph, device=dev, seed=seed, accelerate=accelerate, **budget_opt)
    try:
        model.saver.restore(sess, prefix)
    except (KeyError, ValueError, TypeError) as exc:
        raise RuntimeError(f"--resume: {exc} (resume with the options of the first run: "
                           "--cell, --units, --unroll, --dropout)") from None
    table = History(METRICS)
    if history_csv.is_file():
        table = History.read_csv(history_csv)
        if table.metrics != METRICS:
            table = History(METRICS)
        table.truncate(done)
    return done, table, sess


# --- data-parallel: rnngraph demo --distributed (under mpiexec) -----------------------------------
@dataclass
class DistributedDemoResult:
    test_accuracy: float
    per_rank: list        # per rank: (examples, seconds, allreduce seconds, steps) after epoch 1
    baseline: float       # examples/s of one process on whole batches (mean over the ranks)
    throughput: float     # examples/s of all ranks together, data-parallel
    efficiency: float     # throughput / (ranks * baseline)
    session: object


def run_distributed_demo(cell: str = "basic", units: int | None = None,
                         epochs: int | None = None, unroll: str = "dynamic",
                         seed: int | None = None, learning_rate: float | None = None,
                         batch_size: int | None = None, progress: bool = True,
                         out: str | Path | None = None, baseline_steps: int = 40,
                         log: Callable[[str], None] = print) -> DistributedDemoResult:
    """The demo trained data-parallel: run as `mpiexec -n N rnngraph demo --distributed` (one
    process works too). Every rank takes its shard of each global batch of `batch_size`
    (the same batches, so the same training as one process), one allreduce per step sums the
    gradients; rank 0 logs and, with `out`, writes model.npz (the one-process graph with the
    trained values: a graph holding the allreduce node is not saved).

    It prints each rank's throughput (examples/s after the first epoch, which compiles) and the
    scaling efficiency: the ranks' throughput together over `ranks x` the throughput of one
    process on whole batches, measured first on every rank at once for `baseline_steps` steps
    (so each baseline shares the machine as the ranks do)."""
    comm = dist.init()
    root = comm.rank == 0
    say = log if root else (lambda line: None)
    units = DEFAULTS["units"] if units is None else units
    epochs = DEFAULTS["epochs"] if epochs is None else epochs
    seed = DEFAULTS["seed"] if seed is None else seed
    batch_size = DEFAULTS["batch_size"] if batch_size is None else batch_size
    if epochs < 1 or batch_size < comm.size:
        raise ValueError(f"need epochs >= 1 and a batch of at least one example per rank "
                         f"({comm.size}), got {epochs} epochs, batch {batch_size}")
    data = load_digit_sequences(seed=seed)
    say(f"rnngraph demo --distributed: {comm.size} process{'es' if comm.size > 1 else ''} "
        f"({type(comm).__name__}) on a machine with {os.cpu_count()} CPUs, each on its "
        f"shard of every batch of {batch_size}")
    with _blas_limit(1):   # one BLAS thread per rank: the ranks are the parallelism
        alone = build_classifier(cell=cell, n_neurons=units, unroll=unroll,
                                 learning_rate=learning_rate)
        baseline = _throughput_alone(alone, data, batch_size, seed, baseline_steps)
        model = build_classifier(cell=cell, n_neurons=units, unroll=unroll,
                                 learning_rate=learning_rate, distributed=True)
        plural = "s" if epochs != 1 else ""
        say(f"  model  {model.describe()}, {epochs} epoch{plural}, seed {seed}")
        sess = rg.Session(model.graph, seed=seed)
        dist.broadcast_variables(sess, root=0)
        mine = _train_shards(model, sess, data, comm, epochs, batch_size, seed,
                             progress and root)
    rows = [np.frombuffer(b, dtype=np.float64) for b in comm.allgather_bytes(
        np.array([*mine, baseline], dtype=np.float64).tobytes())]
    per_rank = [tuple(r[:4]) for r in rows]
    baseline = float(np.mean([r[4] for r in rows]))
    wall = max(r[1] for r in per_rank)
    throughput = sum(r[0] for r in per_rank) / wall if wall > 0 else float("nan")
    efficiency = throughput / (comm.size * baseline)
    test_acc = float(sess.run(model.accuracy, feed_dict={model.X: data.X_test,
                                                         model.y: data.y_test}))
    say(f"test accuracy: {test_acc:.2%} after {epochs} epoch{plural}")
    say("rank  examples/s  ms/step  allreduce share")
    for r, (n, secs, ar, steps) in enumerate(per_rank):
        say(f"{r:>4}  {n / secs:>10,.0f}  {1e3 * secs / steps:>7.2f}  {ar / secs:>14.1%}")
    say(f"together {throughput:,.0f} examples/s; one process on whole batches "
        f"{baseline:,.0f} examples/s; scaling efficiency {efficiency:.2f} on {comm.size} "
        f"process{'es' if comm.size > 1 else ''} (after epoch 1; allreduce share: time in "
        f"the collective, waiting for the other ranks included)")
    if out is not None and root:   # rank 0 alone writes files
        # the one-process graph (the allreduce node is not saved) with the trained values
        single = rg.Session(alone.graph, seed=seed)
        for v in model.graph.collections.get("variables", []):
            single.variables.load(v.node.name, sess.variables.committed(v.node.name))
        Path(out).mkdir(parents=True, exist_ok=True)
        path = save(Path(out) / "model.npz", session=single, fetches=alone.fetches())
        say(f"wrote {path}: the trained model as one process runs it (try: rnngraph print "
            f"{path})")
    return DistributedDemoResult(test_acc, per_rank, baseline, throughput, efficiency, sess)


def _throughput_alone(model, data, batch_size, seed, steps) -> float:
    """Examples/s of one process training on whole batches, as _train_shards steps (after 5
    warm-up steps, which compile)."""
    sess = rg.Session(model.graph, seed=seed)
    order = np.random.default_rng(seed).permutation(len(data.X_train))
    batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1,
                                                      batch_size)]
    batches = (batches * (1 + (steps + 5) // max(len(batches), 1)))[:steps + 5]
    _steps(model, sess, data, batches[:5])
    start = time.perf_counter()
    _steps(model, sess, data, batches[5:])
    return steps * batch_size / (time.perf_counter() - start)


def _steps(model, sess, data, batches, bar=None) -> None:
    for idx in batches:
        loss, _ = sess.run([model.loss, model.training_op],
                           feed_dict={model.X: data.X_train[idx], model.y: data.y_train[idx]})
        if bar is not None:
            bar.set_postfix({"loss": f"{float(loss):.3f}"}, refresh=False)
            bar.update(1)


def _train_shards(model, sess, data, comm, epochs, batch_size, seed, progress):
    """Train on this rank's shard of each global batch; (examples, seconds, seconds in the
    allreduce, steps) from epoch 2 on (all epochs when there is one)."""
    rng = np.random.default_rng(seed)   # the same permutation on every rank
    n = len(data.X_train)
    bar = _progress(epochs * -(-n // batch_size), progress)
    examples = seconds = ar_seconds = steps = 0
    try:
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            order = rng.permutation(n)
            shards = [dist.shard(order[i:i + batch_size], comm.rank, comm.size)
                      for i in range(0, n, batch_size)]
            ar0, t0 = comm.stats["allreduce_seconds"], time.perf_counter()
            _steps(model, sess, data, shards, bar)
            if epoch > 0 or epochs == 1:
                examples += sum(len(idx) for idx in shards)
                steps += len(shards)
                seconds += time.perf_counter() - t0
                ar_seconds += comm.stats["allreduce_seconds"] - ar0
    finally:
        bar.close()
    return examples, seconds, ar_seconds, steps
