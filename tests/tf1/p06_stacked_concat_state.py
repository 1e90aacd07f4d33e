# A stacked LSTM with the old concatenated state (state_is_tuple=False everywhere).
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
num_layers = 2
hidden = 3
X = rg.placeholder(rg.float32, [2, 4, 3])
cells = [rg.nn.rnn_cell.LSTMCell(hidden, state_is_tuple=False, forget_bias=0.0)
         for _ in range(num_layers)]
stack = rg.nn.rnn_cell.MultiRNNCell(cells, state_is_tuple=False)
initial = stack.zero_state(2, rg.float32)
outputs, final_state = rg.nn.dynamic_rnn(stack, X, initial_state=initial)

x = np.linspace(-1, 1, 24).reshape(2, 4, 3).astype(np.float32)
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    out_val, state_val = sess.run([outputs, final_state], {X: x})
    names = [v.name for v in rg.trainable_variables()]
    weights = sess.run(rg.trainable_variables())
