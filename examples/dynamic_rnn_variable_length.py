"""Dynamic unrolling with variable-length input sequences, ported line by line from the
textbook (TensorFlow 1.x) to rnngraph.

The second instance has only one step (padded with a zero vector); with sequence_length its
output at the second step is a zero vector and its final state is its t = 0 output.

TF -> rnngraph: tf.placeholder -> rg.placeholder, tf.contrib.rnn.BasicRNNCell ->
rg.nn.BasicRNNCell, tf.nn.dynamic_rnn -> rg.nn.dynamic_rnn, tf.Session -> rg.Session.
Run: python examples/dynamic_rnn_variable_length.py
"""
import numpy as np

import rnngraph as rg

np.set_printoptions(precision=8, suppress=True)

n_steps = 2
n_inputs = 3
n_neurons = 5

X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
seq_length = rg.placeholder(rg.int32, [None])

basic_cell = rg.nn.BasicRNNCell(num_units=n_neurons)
outputs, states = rg.nn.dynamic_rnn(basic_cell, X, dtype=rg.float32,
                                    sequence_length=seq_length)

init = rg.global_variables_initializer()

X_batch = np.array([
        # step 0     step 1
        [[0, 1, 2], [9, 8, 7]],  # instance 0
        [[3, 4, 5], [0, 0, 0]],  # instance 1 (padded with a zero vector)
        [[6, 7, 8], [6, 5, 4]],  # instance 2
        [[9, 0, 1], [3, 2, 1]],  # instance 3
    ])
seq_length_batch = np.array([2, 1, 2, 2])

with rg.Session() as sess:
    init.run()
    outputs_val, states_val = sess.run(
        [outputs, states], feed_dict={X: X_batch, seq_length: seq_length_batch})

print("outputs_val:")
print(outputs_val)
print("states_val:")
print(states_val)

# What the book points out, checked:
print("instance 1, step 1 output is a zero vector:", bool(np.all(outputs_val[1, 1] == 0)))
print("instance 1 final state is its t = 0 output:",
      bool(np.array_equal(states_val[1], outputs_val[1, 0])))
print("other final states are their t = 1 outputs:",
      all(np.array_equal(states_val[i], outputs_val[i, 1]) for i in (0, 2, 3)))
