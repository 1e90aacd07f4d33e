"""The textbook's first RNN, ported line by line from TensorFlow 1.x to rnngraph.

1. A layer of 5 recurrent neurons unrolled over two time steps *by hand* (explicit Wx, Wy, b).
2. The same model with static_rnn over two placeholders X0, X1, with the hand-made weights
   loaded into the cell (kernel = [Wx; Wy], bias = b): it prints the same numbers.
3. The same again with one placeholder X [None, n_steps, n_inputs], transpose + unstack + stack.

TF -> rnngraph: tf.placeholder -> rg.placeholder, tf.contrib.rnn.BasicRNNCell ->
rg.nn.BasicRNNCell, tf.contrib.rnn.static_rnn -> rg.nn.static_rnn, tf.Session -> rg.Session.
Run: python examples/basic_rnn_static.py
"""
import numpy as np

import rnngraph as rg

np.set_printoptions(precision=8, suppress=True)

n_inputs = 3
n_neurons = 5

# --- 1. the manual RNN ------------------------------------------------------------------------
X0 = rg.placeholder(rg.float32, [None, n_inputs])
X1 = rg.placeholder(rg.float32, [None, n_inputs])

Wx = rg.get_variable("Wx", [n_inputs, n_neurons], rg.float32,
                     initializer=rg.initializers.random_normal_initializer(stddev=1.0))
Wy = rg.get_variable("Wy", [n_neurons, n_neurons], rg.float32,
                     initializer=rg.initializers.random_normal_initializer(stddev=1.0))
b = rg.Variable(np.zeros([1, n_neurons], dtype=np.float32), name="b")

Y0 = rg.tanh(rg.matmul(X0, Wx) + b)
Y1 = rg.tanh(rg.matmul(Y0, Wy) + rg.matmul(X1, Wx) + b)

init = rg.global_variables_initializer()

# Mini-batch:        instance 0,instance 1,instance 2,instance 3
X0_batch = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]])  # t = 0
X1_batch = np.array([[9, 8, 7], [0, 0, 0], [6, 5, 4], [3, 2, 1]])  # t = 1

with rg.Session() as sess:
    init.run()
    Y0_val, Y1_val = sess.run([Y0, Y1], feed_dict={X0: X0_batch, X1: X1_batch})
    Wx_val, Wy_val, b_val = (sess.read_variable(v) for v in (Wx, Wy, b))

print("manual Y0_val:")
print(Y0_val)
print("manual Y1_val:")
print(Y1_val)

# --- 2. static_rnn over two placeholders ------------------------------------------------------
rg.reset_default_graph()

X0 = rg.placeholder(rg.float32, [None, n_inputs])
X1 = rg.placeholder(rg.float32, [None, n_inputs])

basic_cell = rg.nn.BasicRNNCell(num_units=n_neurons)
output_seqs, states = rg.nn.static_rnn(
                          basic_cell, [X0, X1], dtype=rg.float32)
Y0, Y1 = output_seqs

init = rg.global_variables_initializer()

with rg.Session() as sess:
    init.run()
    # the cell computes tanh([x, h] @ kernel + bias): kernel stacks Wx over Wy
    sess.load_variable(basic_cell.kernel, np.vstack([Wx_val, Wy_val]))
    sess.load_variable(basic_cell.bias, b_val.reshape(n_neurons))
    Y0_static, Y1_static = sess.run([Y0, Y1], feed_dict={X0: X0_batch, X1: X1_batch})
    states_static = sess.run(states, feed_dict={X0: X0_batch, X1: X1_batch})

print("static_rnn Y0_val:")
print(Y0_static)
print("static_rnn Y1_val:")
print(Y1_static)
# "When you are using basic cells, the final state is simply equal to the last output."
print("final state equals last output:", bool(np.array_equal(states_static, Y1_static)))

# --- 3. one placeholder for all time steps ----------------------------------------------------
rg.reset_default_graph()

n_steps = 2
X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
X_seqs = rg.unstack(rg.transpose(X, perm=[1, 0, 2]))
basic_cell = rg.nn.BasicRNNCell(num_units=n_neurons)
output_seqs, states = rg.nn.static_rnn(
                          basic_cell, X_seqs, dtype=rg.float32)
outputs = rg.transpose(rg.stack(output_seqs), perm=[1, 0, 2])

init = rg.global_variables_initializer()

X_batch = np.array([
        # t = 0     t = 1
        [[0, 1, 2], [9, 8, 7]],  # instance 0
        [[3, 4, 5], [0, 0, 0]],  # instance 1
        [[6, 7, 8], [6, 5, 4]],  # instance 2
        [[9, 0, 1], [3, 2, 1]],  # instance 3
    ])

with rg.Session() as sess:
    init.run()
    sess.load_variable(basic_cell.kernel, np.vstack([Wx_val, Wy_val]))
    sess.load_variable(basic_cell.bias, b_val.reshape(n_neurons))
    outputs_val = outputs.eval(feed_dict={X: X_batch})

print("outputs_val:")
print(outputs_val)

same = (np.allclose(Y0_static, Y0_val, rtol=1e-5, atol=1e-6)
        and np.allclose(Y1_static, Y1_val, rtol=1e-5, atol=1e-6)
        and np.allclose(outputs_val[:, 0], Y0_val, rtol=1e-5, atol=1e-6)
        and np.allclose(outputs_val[:, 1], Y1_val, rtol=1e-5, atol=1e-6))
print("static_rnn matches the manual RNN:", same)
