# An LSTM sequence classifier trained with Adam (the book's MNIST listing, on synthetic data).
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
n_steps = 6
n_inputs = 4
n_neurons = 16
n_outputs = 3
learning_rate = 0.01

X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
y = rg.placeholder(rg.int32, [None])

lstm_cell = rg.nn.rnn_cell.BasicLSTMCell(num_units=n_neurons)
outputs, states = rg.nn.dynamic_rnn(lstm_cell, X, dtype=rg.float32)
top_layer_h_state = states[1]
logits = rg.layers.dense(top_layer_h_state, n_outputs, name="softmax")
xentropy = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
loss = rg.reduce_mean(xentropy, name="loss")
optimizer = rg.train.AdamOptimizer(learning_rate=learning_rate)
training_op = optimizer.minimize(loss)
correct = rg.nn.in_top_k(logits, y, 1)
accuracy = rg.reduce_mean(rg.cast(correct, rg.float32))

init = rg.global_variables_initializer()

rng = np.random.RandomState(42)
X_train = rng.randn(60, n_steps, n_inputs).astype(np.float32)
y_train = (X_train[:, :, 0].sum(axis=1) > 0).astype(np.int32) + (X_train[:, -1, 1] > 1)

with rg.Session() as sess:
    init.run()
    first_weights = sess.run(rg.trainable_variables())
    first_loss = loss.eval(feed_dict={X: X_train, y: y_train})
    losses = []
    for epoch in range(30):
        _, loss_val = sess.run([training_op, loss], feed_dict={X: X_train, y: y_train})
        losses.append(loss_val)
    acc_train = accuracy.eval(feed_dict={X: X_train, y: y_train})
