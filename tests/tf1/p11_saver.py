# Train, checkpoint with tf.train.Saver, restore into a new session from latest_checkpoint.
import os
import tempfile

import numpy as np
import rnngraph as rg

rg.reset_default_graph()
X = rg.placeholder(rg.float32, [None, 4, 2])
y = rg.placeholder(rg.float32, [None, 1])
cell = rg.nn.rnn_cell.GRUCell(3)
_, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
pred = rg.layers.dense(state, 1)
loss = rg.reduce_mean(rg.square(pred - y))
global_step = rg.Variable(0, trainable=False, name="global_step")
train_op = rg.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
step_up = rg.assign(global_step, global_step + 1)
saver = rg.train.Saver(max_to_keep=2)

rng = np.random.RandomState(5)
xs = rng.randn(8, 4, 2).astype(np.float32)
ys = xs.sum(axis=(1, 2))[:, None].astype(np.float32)
ckpt_dir = tempfile.mkdtemp()
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    for i in range(3):
        sess.run([train_op, step_up], {X: xs, y: ys})
        saver.save(sess, os.path.join(ckpt_dir, "model.ckpt"), global_step=global_step)
    trained_loss = sess.run(loss, {X: xs, y: ys})
    trained = sess.run(rg.global_variables())

ckpt = rg.train.get_checkpoint_state(ckpt_dir)
with rg.Session() as sess:
    saver.restore(sess, rg.train.latest_checkpoint(ckpt_dir))
    restored = sess.run(rg.global_variables())
    restored_loss = sess.run(loss, {X: xs, y: ys})
    restored_step = sess.run(global_step)
kept = sorted(f for f in os.listdir(ckpt_dir) if f.startswith("model.ckpt"))
