# dynamic_rnn with sequence_length (the book: the second instance has only one step).
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
n_steps = 2
n_inputs = 3
n_neurons = 5

X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
seq_length = rg.placeholder(rg.int32, [None])
basic_cell = rg.nn.rnn_cell.BasicRNNCell(num_units=n_neurons)
outputs, states = rg.nn.dynamic_rnn(basic_cell, X, dtype=rg.float32,
                                    sequence_length=seq_length)
init = rg.global_variables_initializer()

X_batch = np.array([
    [[0, 1, 2], [9, 8, 7]],
    [[3, 4, 5], [0, 0, 0]],
    [[6, 7, 8], [6, 5, 4]],
    [[9, 0, 1], [3, 2, 1]],
])
seq_length_batch = np.array([2, 1, 2, 2])
with rg.Session() as sess:
    init.run()
    outputs_val, states_val = sess.run(
        [outputs, states], feed_dict={X: X_batch, seq_length: seq_length_batch})
    weights = sess.run(rg.trainable_variables())
