# The textbook's first RNN: two time steps written by hand, weights from tf.random_normal.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
n_inputs = 3
n_neurons = 5

X0 = rg.placeholder(rg.float32, [None, n_inputs])
X1 = rg.placeholder(rg.float32, [None, n_inputs])

Wx = rg.Variable(rg.random_normal(shape=[n_inputs, n_neurons], dtype=rg.float32))
Wy = rg.Variable(rg.random_normal(shape=[n_neurons, n_neurons], dtype=rg.float32))
b = rg.Variable(rg.zeros([1, n_neurons], dtype=rg.float32))

Y0 = rg.tanh(rg.matmul(X0, Wx) + b)
Y1 = rg.tanh(rg.matmul(Y0, Wy) + rg.matmul(X1, Wx) + b)

init = rg.global_variables_initializer()

X0_batch = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]])  # t = 0
X1_batch = np.array([[9, 8, 7], [0, 0, 0], [6, 5, 4], [3, 2, 1]])  # t = 1

with rg.Session() as sess:
    init.run()
    Y0_val, Y1_val = sess.run([Y0, Y1], feed_dict={X0: X0_batch, X1: X1_batch})
    Wx_val, Wy_val, b_val = sess.run([Wx, Wy, b])
