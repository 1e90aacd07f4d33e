"""Training a Sequence Classifier, as in the reference book, with rnngraph (rg) in place of tf.

The book treats each 28x28 MNIST image as a sequence of 28 rows of 28 pixels, runs a cell of
150 recurrent neurons over the rows, and feeds the final state to a fully connected layer of 10
neurons (one per class), trained with Adam on the sparse softmax cross-entropy.

MNIST needs a download; scikit-learn ships a smaller set of real handwritten digits: 1797
images of 8x8 pixels. So here each image is a sequence of 8 rows of 8 pixels. Everything else
is the book's code, line for line.

    python examples/train_sequence_classifier.py        (about 10-20 s on two CPU cores)

`rnngraph demo` runs the same model with a progress bar and writes its diagrams.
"""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import rnngraph as rg

# --- the data: each image row is one time step -----------------------------------------------------
digits = load_digits()
X_all = (digits.images / 16.0).astype(np.float32)   # [1797, 8, 8], pixel values 0..16 -> 0..1
y_all = digits.target.astype(np.int32)               # [1797], the digit 0..9
X_train, X_test, y_train, y_test = train_test_split(
    X_all, y_all, test_size=0.2, random_state=42, stratify=y_all)

# --- construction phase (the book's code, tf -> rg) -----------------------------------------------
n_steps = 8        # the book: 28
n_inputs = 8       # the book: 28
n_neurons = 150
n_outputs = 10

learning_rate = 0.001

X = rg.placeholder(rg.float32, [None, n_steps, n_inputs])
y = rg.placeholder(rg.int32, [None])

basic_cell = rg.nn.BasicRNNCell(num_units=n_neurons)
outputs, states = rg.nn.dynamic_rnn(basic_cell, X, dtype=rg.float32)

logits = rg.layers.dense(states, n_outputs)    # the book: fully_connected(states, n_outputs,
                                               #                           activation_fn=None)
xentropy = rg.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
loss = rg.reduce_mean(xentropy)
optimizer = rg.train.AdamOptimizer(learning_rate=learning_rate)
training_op = optimizer.minimize(loss)
correct = rg.nn.in_top_k(logits, y, 1)
accuracy = rg.reduce_mean(rg.cast(correct, rg.float32))

init = rg.global_variables_initializer()

# --- execution phase ------------------------------------------------------------------------------
n_epochs = 40      # the book: 100 epochs of MNIST's 55,000 images; we have 1,437
batch_size = 64    # the book: 150
rng = np.random.default_rng(42)

with rg.Session(seed=42) as sess:   # the seed makes the initial weights reproducible
    init.run()
    for epoch in range(n_epochs):
        order = rng.permutation(len(X_train))    # the book: mnist.train.next_batch(batch_size)
        for iteration in range(len(X_train) // batch_size):
            batch = order[iteration * batch_size:(iteration + 1) * batch_size]
            X_batch, y_batch = X_train[batch], y_train[batch]
            sess.run(training_op, feed_dict={X: X_batch, y: y_batch})
        acc_train = accuracy.eval(feed_dict={X: X_batch, y: y_batch})
        acc_test = accuracy.eval(feed_dict={X: X_test, y: y_test})
        print(epoch, "Train accuracy:", acc_train, "Test accuracy:", acc_test)

    # --- beyond the book: keep the trained model, look at its graph ---------------------------------
    path = rg.save("out/sequence_classifier.npz", session=sess,
                   fetches={"X": X, "y": y, "logits": logits, "loss": loss, "accuracy": accuracy})
    print(f"saved the graph and its trained weights to {path}")
    print(f"  print its IR:  rnngraph print {path}")
    print(f"  draw it:       rnngraph render {path} -o out/sequence_classifier.svg")

# later, elsewhere: the same model, weights included, without the code that built it
restored = rg.io.read(path)
with restored.session() as sess:
    test_accuracy = sess.run(restored.fetches["accuracy"],
                             feed_dict={restored.fetches["X"]: X_test,
                                        restored.fetches["y"]: y_test})
print(f"test accuracy of the reloaded model: {test_accuracy:.2%}")
