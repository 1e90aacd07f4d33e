"""Applying dropout, as in the reference book's time-series RNN, with rnngraph (rg) in place of
tf: three BasicRNNCell layers, each wrapped in a DropoutWrapper whose input keep probability
is a placeholder_with_default(1.0): training feeds 0.5, prediction feeds nothing and keeps
every unit. The model learns to predict the next value of t*sin(t)/3 + 2*sin(5t) at each of
20 steps; the trained model is saved with Saver and restored to predict.

    python examples/dropout_time_series.py        (about 20-40 s on two CPU cores)
"""
import os
import tempfile

import numpy as np

import rnngraph as rg

# --- the data: windows of a time series, the target shifted by one step ----------------------------
t_min, t_max = 0, 30
resolution = 0.1


def time_series(t):
    return t * np.sin(t) / 3 + 2 * np.sin(t * 5)


def next_batch(batch_size, n_steps, rng):
    t0 = rng.random((batch_size, 1)) * (t_max - t_min - n_steps * resolution)
    Ts = t0 + np.arange(0.0, n_steps + 1) * resolution
    ys = time_series(Ts)
    return ys[:, :-1].reshape(-1, n_steps, 1), ys[:, 1:].reshape(-1, n_steps, 1)


t_instance = np.linspace(12.2, 12.2 + resolution * (20 + 1), 20 + 1)

# --- construction phase (the book's code, tf -> rg) ---------------------------------------------------
rg.set_random_seed(42)

n_inputs = 1
n_neurons = 100
n_layers = 3
n_steps = 20
n_outputs = 1

keep_prob = rg.placeholder_with_default(1.0, shape=())

X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
y = rg.placeholder(rg.float32, [None, n_steps, n_outputs])

cells = [rg.contrib.rnn.BasicRNNCell(num_units=n_neurons) for layer in range(n_layers)]
cells_drop = [rg.contrib.rnn.DropoutWrapper(cell, input_keep_prob=keep_prob) for cell in cells]
multi_layer_cell = rg.contrib.rnn.MultiRNNCell(cells_drop)
rnn_outputs, states = rg.nn.dynamic_rnn(multi_layer_cell, X, dtype=rg.float32)

learning_rate = 0.01

stacked_rnn_outputs = rg.reshape(rnn_outputs, [-1, n_neurons])
stacked_outputs = rg.layers.dense(stacked_rnn_outputs, n_outputs)
outputs = rg.reshape(stacked_outputs, [-1, n_steps, n_outputs])

loss = rg.reduce_mean(rg.square(outputs - y))
optimizer = rg.train.AdamOptimizer(learning_rate)
training_op = optimizer.minimize(loss)

init = rg.global_variables_initializer()
saver = rg.train.Saver()

# --- execution phase ------------------------------------------------------------------------------------
n_iterations = 300     # the book: 1500
batch_size = 50
train_keep_prob = 0.5
rng = np.random.default_rng(42)
model_path = os.path.join(tempfile.mkdtemp(), "my_dropout_time_series_model")

with rg.Session() as sess:
    init.run()
    for iteration in range(n_iterations):
        X_batch, y_batch = next_batch(batch_size, n_steps, rng)
        _, mse = sess.run([training_op, loss],
                          feed_dict={X: X_batch, y: y_batch, keep_prob: train_keep_prob})
        if iteration % 100 == 0 or iteration == n_iterations - 1:
            print(iteration, "Training MSE:", mse)
    saver.save(sess, model_path)

with rg.Session() as sess:
    saver.restore(sess, model_path)
    X_new = time_series(np.array(t_instance[:-1].reshape(-1, n_steps, n_inputs)))
    y_pred = sess.run(outputs, feed_dict={X: X_new})   # keep_prob: its default, 1.0

y_true = time_series(t_instance[1:])
print("prediction MSE (no dropout at prediction time):",
      float(np.mean((y_pred.ravel() - y_true) ** 2)))
