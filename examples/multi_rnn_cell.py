"""The two examples of the tf.nn.dynamic_rnn API page, ported line by line to rnngraph:
a BasicRNNCell with an explicit zero initial state, and a MultiRNNCell of two LSTMCells
(128 and 256 units) whose state is a 2-tuple of LSTMStateTuples.

TF -> rnngraph: tf.nn.rnn_cell.* -> rg.nn.rnn_cell.*, tf.nn.dynamic_rnn -> rg.nn.dynamic_rnn,
tf.float32 -> rg.float32.
Run: python examples/multi_rnn_cell.py
"""
import numpy as np

import rnngraph as rg

batch_size, max_time, input_size, hidden_size = 3, 6, 10, 16
input_data = rg.placeholder(rg.float32, [batch_size, max_time, input_size])
data = input_data

# create a BasicRNNCell
rnn_cell = rg.nn.rnn_cell.BasicRNNCell(hidden_size)

# 'outputs' is a tensor of shape [batch_size, max_time, cell_state_size]

# defining initial state
initial_state = rnn_cell.zero_state(batch_size, dtype=rg.float32)

# 'state' is a tensor of shape [batch_size, cell_state_size]
outputs, state = rg.nn.dynamic_rnn(rnn_cell, input_data,
                                   initial_state=initial_state,
                                   dtype=rg.float32)
basic_outputs, basic_state = outputs, state

# create 2 LSTMCells
rnn_layers = [rg.nn.rnn_cell.LSTMCell(size) for size in [128, 256]]

# create a RNN cell composed sequentially of a number of RNNCells
multi_rnn_cell = rg.nn.rnn_cell.MultiRNNCell(rnn_layers)

# 'outputs' is a tensor of shape [batch_size, max_time, 256]
# 'state' is a N-tuple where N is the number of LSTMCells containing a
# rg.nn.LSTMStateTuple for each cell
outputs, state = rg.nn.dynamic_rnn(cell=multi_rnn_cell,
                                   inputs=data,
                                   dtype=rg.float32)

# --- the static shapes, then run both and print the shapes -----------------------------------
print("static shapes: outputs", outputs.shape, "state",
      [(s.c.shape, s.h.shape) for s in state])
x = np.random.default_rng(0).standard_normal((batch_size, max_time, input_size))
with rg.Session() as sess:
    rg.global_variables_initializer().run()
    basic_out_val, basic_state_val, outputs_val, state_val = sess.run(
        [basic_outputs, basic_state, outputs, state], feed_dict={input_data: x})

print("BasicRNNCell outputs:", basic_out_val.shape, "state:", basic_state_val.shape)
print("MultiRNNCell outputs:", outputs_val.shape)
print(f"state: a {len(state_val)}-tuple of", ", ".join(type(s).__name__ for s in state_val))
for k, s in enumerate(state_val):
    print(f"state[{k}].c: {s.c.shape}  state[{k}].h: {s.h.shape}")
print("outputs[:, -1] == state[1].h:", bool(np.array_equal(outputs_val[:, -1], state_val[1].h)))
