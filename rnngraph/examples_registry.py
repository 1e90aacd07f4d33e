"""Built-in example graphs, by name, for the CLI (`rnngraph print lstm`, `rnngraph render
classifier --grad`). Each mirrors a snippet of the reference documents.

    from rnngraph.examples_registry import build, names
    ex = build("lstm", unroll="static", grad=True)
    print(ex.graph)

Every example has a fixed number of time steps (its snippet's); `build(..., steps=N)` builds it
over N steps instead (`rnngraph plan lstm --steps 1000`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import rnngraph as rg

from .demo import build_classifier
from .ir.graph import Graph
from .ir.value import Value


@dataclass
class Example:
    name: str
    description: str
    graph: Graph
    fetches: dict            # name -> Value: inputs (placeholders), outputs, loss, ...
    unroll: str | None       # "dynamic" / "static", None when it does not apply

    @property
    def loss(self) -> Value | None:
        return self.fetches.get("loss")


@dataclass
class _Entry:
    build: Callable[[str, int], dict]   # (unroll, steps) -> fetches
    description: str
    steps: int | None                 # its snippet's time steps (None: left open)
    unrolls: tuple = ("dynamic", "static")
    fixed_unroll: str | None = None   # aliases such as basic_rnn_static
    builds_gradients: bool = False    # the graph already holds gradients (a train op)
    aliases: list = field(default_factory=list)


def _rnn(cell, X, unroll: str, n_steps: int, **kw):
    """dynamic_rnn, or the book's static form (unstack time, static_rnn, stack back)."""
    if unroll == "dynamic":
        return rg.nn.dynamic_rnn(cell, X, dtype=rg.float32, **kw)
    X_seqs = rg.unstack(rg.transpose(X, perm=[1, 0, 2]), num=n_steps)
    output_seqs, states = rg.nn.static_rnn(cell, X_seqs, dtype=rg.float32, **kw)
    return rg.transpose(rg.stack(output_seqs), perm=[1, 0, 2]), states


def _stand_in_loss(outputs):
    return rg.reduce_mean(rg.square(outputs), name="loss")


# --- the examples ----------------------------------------------------------------------------------
def _basic_rnn(unroll, n_steps):
    """The book's first RNN: 2 steps of 3 inputs, 5 recurrent neurons."""
    n_inputs, n_neurons = 3, 5
    X = rg.placeholder(rg.float32, [None, n_steps, n_inputs], name="X")
    basic_cell = rg.nn.BasicRNNCell(num_units=n_neurons)
    outputs, states = _rnn(basic_cell, X, unroll, n_steps)
    return {"X": X, "outputs": outputs, "states": states, "loss": _stand_in_loss(outputs)}


def _seq_length(unroll, n_steps):
    """The book's variable-length example: sequence_length zeroes outputs past each length."""
    n_inputs, n_neurons = 3, 5
    X = rg.placeholder(rg.float32, [None, n_steps, n_inputs], name="X")
    seq_length = rg.placeholder(rg.int32, [None], name="seq_length")
    basic_cell = rg.nn.BasicRNNCell(num_units=n_neurons)
    outputs, states = _rnn(basic_cell, X, unroll, n_steps, sequence_length=seq_length)
    return {"X": X, "seq_length": seq_length, "outputs": outputs, "states": states,
            "loss": _stand_in_loss(outputs)}


def _lstm(unroll, n_steps):
    """The sequence_length tutorial's LSTM: LSTMCell(7) over (batch, 10 steps, 20 features)."""
    cell = rg.nn.LSTMCell(7)
    input_sequences = rg.placeholder(rg.float32, shape=(None, n_steps, 20),
                                     name="input_sequences")
    output, final_state = _rnn(cell, input_sequences, unroll, n_steps)
    return {"input_sequences": input_sequences, "output": output, "final_state": final_state,
            "loss": _stand_in_loss(output)}


def _gru(unroll, n_steps):
    """A GRUCell(16) over (batch, 10 steps, 8 features)."""
    X = rg.placeholder(rg.float32, [None, n_steps, 8], name="X")
    outputs, state = _rnn(rg.nn.GRUCell(16), X, unroll, n_steps)
    return {"X": X, "outputs": outputs, "state": state, "loss": _stand_in_loss(outputs)}


def _multi_lstm(unroll, n_steps):
    """The dynamic_rnn API page's stack: MultiRNNCell of LSTMCells of 128 and 256 units."""
    data = rg.placeholder(rg.float32, [None, n_steps, 32], name="data")
    rnn_layers = [rg.nn.LSTMCell(size) for size in [128, 256]]
    multi_rnn_cell = rg.nn.MultiRNNCell(rnn_layers)
    outputs, state = _rnn(multi_rnn_cell, data, unroll, n_steps)
    return {"data": data, "outputs": outputs, "state": state, "loss": _stand_in_loss(outputs)}


def _bidirectional(unroll, n_steps):
    """bidirectional_dynamic_rnn with LSTMCell(8) each way over (batch, time, 4)."""
    X = rg.placeholder(rg.float32, [None, n_steps, 4], name="X")
    (fw, bw), _ = rg.nn.bidirectional_dynamic_rnn(rg.nn.LSTMCell(8), rg.nn.LSTMCell(8), X,
                                                  dtype=rg.float32)
    outputs = rg.concat([fw, bw], axis=2)
    return {"X": X, "outputs": outputs, "loss": _stand_in_loss(outputs)}


def _classifier(unroll, n_steps):
    """The book's sequence classifier (the demo's model): BasicRNNCell(150) over 8x8 digits,
    dense to 10 classes, cross-entropy, Adam's training op, accuracy."""
    model = build_classifier(unroll=unroll, graph=rg.get_default_graph(), n_steps=n_steps)
    return model.fetches()


_EXAMPLES: dict[str, _Entry] = {
    "basic_rnn": _Entry(_basic_rnn, "the book's BasicRNNCell(5) over 2 steps of 3 inputs", 2),
    "basic_rnn_dynamic": _Entry(_basic_rnn, "basic_rnn unrolled with dynamic_rnn (a loop node)",
                                2, fixed_unroll="dynamic"),
    "basic_rnn_static": _Entry(_basic_rnn, "basic_rnn unrolled with static_rnn (one cell copy "
                               "per step)", 2, fixed_unroll="static"),
    "seq_length": _Entry(_seq_length, "basic_rnn with a sequence_length placeholder", 2),
    "lstm": _Entry(_lstm, "LSTMCell(7) over 10 steps of 20 features", 10),
    "gru": _Entry(_gru, "GRUCell(16) over 10 steps of 8 features", 10),
    "multi_lstm": _Entry(_multi_lstm, "MultiRNNCell([LSTMCell(128), LSTMCell(256)])", 10),
    "bidirectional": _Entry(_bidirectional, "bidirectional_dynamic_rnn, LSTMCell(8) each way",
                            None, unrolls=("dynamic",)),
    "classifier": _Entry(_classifier, "the demo's digit classifier with loss, accuracy and "
                         "Adam's train op", 8, builds_gradients=True),
}


def names() -> list[str]:
    return list(_EXAMPLES)


def describe() -> list[tuple[str, str]]:
    return [(name, e.description) for name, e in _EXAMPLES.items()]


def build(name: str, unroll: str | None = None, grad: bool = False,
          steps: int | None = None) -> Example:
    """Build example `name` in a fresh graph. `unroll`: "dynamic" (default) or "static";
    `grad`: also add the gradients of its loss with respect to its weights (examples with a
    train op already hold them); `steps`: its number of time steps (default: the snippet's;
    a positive int)."""

    if name not in _EXAMPLES:
        raise KeyError(name)
    entry = _EXAMPLES[name]
    if entry.fixed_unroll is not None:
        if unroll is not None and unroll != entry.fixed_unroll:
            base = name.rsplit("_", 1)[0]
            raise ValueError(f"example {name!r} is always {entry.fixed_unroll}; use "
                             f"'{base} --unroll {unroll}' or '{base}_{unroll}'")
        unroll = entry.fixed_unroll
    unroll = unroll or "dynamic"
    if unroll not in entry.unrolls:
        raise ValueError(f"example {name!r} supports --unroll {' or '.join(entry.unrolls)}, "
                         f"not {unroll!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or steps < 1):
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    graph = rg.Graph()
    with graph.as_default():
        fetches = entry.build(unroll, steps if steps is not None else entry.steps)
        if grad and not entry.builds_gradients and fetches.get("loss") is not None:
            variables = rg.trainable_variables(graph)
            for v, g in zip(variables, rg.gradients(fetches["loss"], variables)):
                if g is not None:
                    fetches[f"gradient/{v.node.name}"] = g
    fetches = {k: _first(v) for k, v in fetches.items()}
    _relocate(graph, f"example {name}")
    return Example(name, entry.description, graph, fetches, unroll)


def _relocate(graph: Graph, location: str) -> None:
    """Name the example as where its nodes were built (the innermost frame outside rnngraph
    would be the command-line launcher, which tells a reader nothing)."""
    for node in graph.nodes:
        node.location = location
        for body in node.op.subgraphs():
            _relocate(body, location)


def _first(v):
    """A fetch as one Value (an LSTM state tuple is represented by its h)."""
    while isinstance(v, (tuple, list)):
        v = v[-1]
    return v
