# A cell written the TF1 way: call() asks get_variable for its weights; no build().
import numpy as np
import rnngraph as rg

rg.reset_default_graph()

class MinimalRNNCell(rg.nn.rnn_cell.RNNCell):
    def __init__(self, num_units):
        super(MinimalRNNCell, self).__init__()
        self._num_units = num_units

    @property
    def state_size(self):
        return self._num_units

    @property
    def output_size(self):
        return self._num_units

    def call(self, inputs, state):
        w = rg.get_variable("w", [inputs.get_shape()[-1], self._num_units])
        u = rg.get_variable("u", [self._num_units, self._num_units])
        b = rg.get_variable("b", [self._num_units], initializer=rg.zeros_initializer())
        output = rg.nn.relu(rg.matmul(inputs, w) + rg.matmul(state, u) + b)
        return output, output

X = rg.placeholder(rg.float32, [None, 5, 2])
cell = MinimalRNNCell(3)
outputs, state = rg.nn.dynamic_rnn(cell, X, dtype=rg.float32)
loss = rg.reduce_sum(outputs)
grads = rg.gradients(loss, cell.trainable_variables)

x = np.random.RandomState(3).randn(4, 5, 2).astype(np.float32)
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    out_val, grad_vals = sess.run([outputs, grads], {X: x})
    names = [v.name for v in cell.trainable_variables]
    weights = sess.run(cell.trainable_variables)
