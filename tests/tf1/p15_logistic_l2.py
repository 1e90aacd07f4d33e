# Multi-label logistic regression on RNN features with sigmoid cross-entropy and l2_loss decay.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
X = rg.placeholder(rg.float32, [None, 4, 3])
labels = rg.placeholder(rg.float32, [None, 2])
cell = rg.nn.rnn_cell.LSTMCell(5, use_peepholes=True, initializer=rg.constant_initializer(0.1))
outputs, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
W = rg.get_variable("W", [5, 2], initializer=rg.constant_initializer(0.3))
b = rg.get_variable("b", [2], initializer=rg.zeros_initializer())
logits = rg.matmul(state.h, W) + b
xent = rg.reduce_mean(rg.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
l2 = 0.01 * rg.add_n([rg.nn.l2_loss(v) for v in rg.trainable_variables() if "bias" not in v.name])
loss = xent + l2
train_op = rg.train.GradientDescentOptimizer(0.5).minimize(loss)

rng = np.random.RandomState(11)
xs = rng.randn(6, 4, 3).astype(np.float32)
ys = np.stack([xs[:, :, 0].mean(1) > 0, xs[:, -1, 2] > 0], 1).astype(np.float32)
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    first = sess.run([xent, l2, state.h], {X: xs, labels: ys})
    weights = dict(zip([v.name for v in rg.trainable_variables()],
                       sess.run(rg.trainable_variables())))
    for _ in range(25):
        sess.run(train_op, {X: xs, labels: ys})
    last_loss = sess.run(loss, {X: xs, labels: ys})
