# contrib.legacy_seq2seq: basic_rnn_seq2seq trained with legacy sequence_loss.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
seq_len = 3
batch = 4
dim = 2
enc_inputs = [rg.placeholder(rg.float32, [batch, dim], name="enc%d" % i) for i in range(seq_len)]
dec_inputs = [rg.placeholder(rg.float32, [batch, dim], name="dec%d" % i) for i in range(seq_len)]
targets = [rg.placeholder(rg.int32, [batch], name="tgt%d" % i) for i in range(seq_len)]
weights = [rg.ones([batch]) for _ in range(seq_len)]
cell = rg.contrib.rnn.GRUCell(5)
dec_outputs, dec_state = rg.contrib.legacy_seq2seq.basic_rnn_seq2seq(enc_inputs, dec_inputs, cell)
with rg.variable_scope("proj"):
    logits = [rg.layers.dense(o, 3, reuse=rg.AUTO_REUSE, name="out") for o in dec_outputs]
loss = rg.contrib.legacy_seq2seq.sequence_loss(logits, targets, weights)
train_op = rg.train.AdamOptimizer(0.05).minimize(loss)

rng = np.random.RandomState(9)
feed = {}
for i in range(seq_len):
    feed[enc_inputs[i]] = rng.randn(batch, dim).astype(np.float32)
    feed[dec_inputs[i]] = rng.randn(batch, dim).astype(np.float32)
    feed[targets[i]] = rng.randint(0, 3, batch).astype(np.int32)
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    names = [v.name for v in rg.trainable_variables()]
    values = sess.run(rg.trainable_variables())
    loss0 = sess.run(loss, feed)
    for _ in range(40):
        sess.run(train_op, feed)
    loss40 = sess.run(loss, feed)
