# The book's DeviceCellWrapper: places each layer of a MultiRNNCell with tf.device.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()

class DeviceCellWrapper(rg.nn.rnn_cell.RNNCell):
    def __init__(self, device, cell):
        self._cell = cell
        self._device = device

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._cell.output_size

    def __call__(self, inputs, state, scope=None):
        with rg.device(self._device):
            return self._cell(inputs, state, scope)

n_inputs = 5
n_steps = 4
n_neurons = 6
X = rg.placeholder(rg.float32, shape=[None, n_steps, n_inputs])
devices = ["/cpu:0", "/cpu:0", "/cpu:0"]
cells = [DeviceCellWrapper(dev, rg.nn.rnn_cell.BasicRNNCell(num_units=n_neurons))
         for dev in devices]
multi_layer_cell = rg.nn.rnn_cell.MultiRNNCell(cells)
outputs, states = rg.nn.dynamic_rnn(multi_layer_cell, X, dtype=rg.float32)
init = rg.global_variables_initializer()

x = np.random.rand(2, n_steps, n_inputs)
with rg.Session(config=rg.ConfigProto(allow_soft_placement=True)) as sess:
    init.run()
    out_val = sess.run(outputs, feed_dict={X: x})
    weights = sess.run(rg.trainable_variables())
    names = [v.name for v in rg.trainable_variables()]
