# Scalar and histogram summaries merged and written with tf.summary.FileWriter during training.
import tempfile

import numpy as np
import rnngraph as rg

rg.reset_default_graph()
X = rg.placeholder(rg.float32, [None, 3, 2])
y = rg.placeholder(rg.int32, [None])
cell = rg.nn.rnn_cell.BasicRNNCell(4)
_, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
logits = rg.layers.dense(state, 2)
with rg.name_scope("loss"):
    loss = rg.reduce_mean(rg.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    rg.summary.scalar("xent", loss)
rg.summary.histogram("state", state)
train_op = rg.train.GradientDescentOptimizer(0.1).minimize(loss)
merged = rg.summary.merge_all()

logdir = tempfile.mkdtemp()
rng = np.random.RandomState(2)
xs = rng.randn(10, 3, 2).astype(np.float32)
ys = (xs[:, 0, 0] > 0).astype(np.int32)
losses = []
with rg.Session() as sess:
    writer = rg.summary.FileWriter(logdir, sess.graph)
    sess.run(rg.global_variables_initializer())
    for step in range(5):
        summary, loss_val, _ = sess.run([merged, loss, train_op], {X: xs, y: ys})
        writer.add_summary(summary, step)
        losses.append(loss_val)
    writer.close()
