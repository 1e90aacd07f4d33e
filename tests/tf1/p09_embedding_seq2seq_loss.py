# A character language model: embeddings, an LSTM, a projection and contrib.seq2seq.sequence_loss.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
vocab_size = 7
embed_dim = 4
hidden = 5
inputs = rg.placeholder(rg.int32, [None, None], name="inputs")
targets = rg.placeholder(rg.int32, [None, None], name="targets")
lengths = rg.placeholder(rg.int32, [None], name="lengths")

embedding = rg.get_variable("embedding", [vocab_size, embed_dim])
emb = rg.nn.embedding_lookup(embedding, inputs)
cell = rg.nn.rnn_cell.LSTMCell(hidden)
outputs, _ = rg.nn.dynamic_rnn(cell, emb, sequence_length=lengths, dtype=rg.float32)
logits = rg.layers.dense(outputs, vocab_size)
max_len = rg.reduce_max(lengths)
mask = rg.cast(rg.less(rg.expand_dims(rg.range(3), 0), rg.expand_dims(lengths, 1)), rg.float32)
loss = rg.contrib.seq2seq.sequence_loss(logits, targets, mask)
train_op = rg.train.GradientDescentOptimizer(0.5).minimize(loss)

ins = np.array([[1, 2, 3], [4, 5, 0]], np.int32)
outs = np.array([[2, 3, 4], [5, 6, 0]], np.int32)
lens = np.array([3, 2], np.int32)
feed = {inputs: ins, targets: outs, lengths: lens}
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    weights = dict(zip([v.name for v in rg.trainable_variables()],
                       sess.run(rg.trainable_variables())))
    loss0 = sess.run(loss, feed)
    for _ in range(20):
        sess.run(train_op, feed)
    loss20 = sess.run(loss, feed)
