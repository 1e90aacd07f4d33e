# A static bidirectional RNN over variable-length sequences, outputs concatenated per step.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
n_steps = 3
X = rg.placeholder(rg.float32, [None, n_steps, 2])
seq_len = rg.placeholder(rg.int32, [None])
x_steps = rg.unstack(X, n_steps, 1)
fw_cell = rg.contrib.rnn.BasicLSTMCell(4, forget_bias=1.0)
bw_cell = rg.contrib.rnn.BasicLSTMCell(4, forget_bias=1.0)
outputs, state_fw, state_bw = rg.contrib.rnn.static_bidirectional_rnn(
    fw_cell, bw_cell, x_steps, dtype=rg.float32, sequence_length=seq_len)
last = outputs[-1]

x = np.random.RandomState(1).randn(3, n_steps, 2).astype(np.float32)
lens = np.array([3, 1, 2])
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    outs_val, fw_val, bw_val = sess.run([outputs, state_fw, state_bw], {X: x, seq_len: lens})
    names = [v.name for v in rg.trainable_variables()]
    weights = sess.run(rg.trainable_variables())
