# static_rnn over a [batch, steps, inputs] placeholder unstacked along time (the book's listing).
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
n_steps = 2
n_inputs = 3
n_neurons = 5

X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
X_seqs = rg.unstack(rg.transpose(X, perm=[1, 0, 2]))
basic_cell = rg.contrib.rnn.BasicRNNCell(num_units=n_neurons)
output_seqs, states = rg.contrib.rnn.static_rnn(basic_cell, X_seqs, dtype=rg.float32)
outputs = rg.transpose(rg.stack(output_seqs), perm=[1, 0, 2])

init = rg.global_variables_initializer()
X_batch = np.array([
    [[0, 1, 2], [9, 8, 7]],
    [[3, 4, 5], [0, 0, 0]],
    [[6, 7, 8], [6, 5, 4]],
    [[9, 0, 1], [3, 2, 1]],
])
with rg.Session() as sess:
    init.run()
    outputs_val = outputs.eval(feed_dict={X: X_batch})
    kernel_val, bias_val = sess.run(basic_cell.trainable_variables)
    variable_names = [v.name for v in rg.trainable_variables()]
