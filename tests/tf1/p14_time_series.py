# The book's time-series predictor: OutputProjectionWrapper around a BasicRNNCell, MSE, Adam.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
n_steps = 20
n_inputs = 1
n_neurons = 16
n_outputs = 1
t_min, t_max = 0, 30
resolution = 0.1

def time_series(t):
    return t * np.sin(t) / 3 + 2 * np.sin(t * 5)

def next_batch(batch_size, n_steps):
    rnd = np.random.RandomState(batch_size)
    t0 = rnd.rand(batch_size, 1) * (t_max - t_min - n_steps * resolution)
    Ts = t0 + np.arange(0., n_steps + 1) * resolution
    ys = time_series(Ts)
    return ys[:, :-1].reshape(-1, n_steps, 1), ys[:, 1:].reshape(-1, n_steps, 1)

X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
y = rg.placeholder(rg.float32, [None, n_steps, n_outputs])
cell = rg.contrib.rnn.OutputProjectionWrapper(
    rg.contrib.rnn.BasicRNNCell(num_units=n_neurons, activation=rg.nn.relu),
    output_size=n_outputs)
outputs, states = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
loss = rg.reduce_mean(rg.square(outputs - y))
optimizer = rg.train.AdamOptimizer(learning_rate=0.001)
training_op = optimizer.minimize(loss)
init = rg.global_variables_initializer()

X_batch, y_batch = next_batch(50, n_steps)
mses = []
with rg.Session() as sess:
    init.run()
    first_out = sess.run(outputs, feed_dict={X: X_batch})
    weights = sess.run(rg.trainable_variables())
    names = [v.name for v in rg.trainable_variables()]
    for iteration in range(60):
        sess.run(training_op, feed_dict={X: X_batch, y: y_batch})
        if iteration % 20 == 0:
            mses.append(loss.eval(feed_dict={X: X_batch, y: y_batch}))
    mses.append(loss.eval(feed_dict={X: X_batch, y: y_batch}))
