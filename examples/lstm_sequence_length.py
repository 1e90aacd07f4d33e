"""An LSTM over a padded batch with sequence lengths, ported line by line from the tutorial
("LSTM Output", B. Sequence lengths) from TensorFlow 1.x to rnngraph.

TF -> rnngraph: tf.nn.rnn_cell.LSTMCell -> rg.nn.rnn_cell.LSTMCell (also rg.nn.LSTMCell),
tf.placeholder -> rg.placeholder, tf.nn.dynamic_rnn -> rg.nn.dynamic_rnn.
Run: python examples/lstm_sequence_length.py
"""
import numpy as np

import rnngraph as rg

lens = [4, 9, 10, 5, 10]
cell = rg.nn.rnn_cell.LSTMCell(7)
input_sequences = rg.placeholder(
    rg.float32,
    shape=(None, 10, 20)
)
output, final_state = rg.nn.dynamic_rnn(
    cell,
    input_sequences,
    sequence_length=lens,
    dtype=rg.float32
)

# --- run it on a batch of 5 padded sequences --------------------------------------------------
print("static output shape:", output.shape)
rng = np.random.default_rng(0)
batch = rng.standard_normal((len(lens), 10, 20)).astype(np.float32)
for i, n in enumerate(lens):
    batch[i, n:] = 0.0  # padding

with rg.Session() as sess:
    rg.global_variables_initializer().run()
    output_val, (c_val, h_val) = sess.run([output, final_state],
                                          feed_dict={input_sequences: batch})

print("output shape:", output_val.shape)
print("final_state: LSTMStateTuple c", c_val.shape, "h", h_val.shape)
for i, n in enumerate(lens):
    steps = int(np.sum(np.any(output_val[i] != 0, axis=-1)))
    same = bool(np.array_equal(h_val[i], output_val[i, n - 1]))
    print(f"row {i}: length {n}, non-zero output steps {steps}, "
          f"final h == output at step {n - 1}: {same}")
