# One GRU encoder shared by two inputs through variable_scope reuse (a siamese network).
import numpy as np
import rnngraph as rg

rg.reset_default_graph()

def encoder(inputs, reuse=None):
    with rg.variable_scope("encoder", reuse=reuse):
        cell = rg.nn.rnn_cell.GRUCell(4)
        _, state = rg.nn.dynamic_rnn(cell, inputs, dtype=rg.float32)
        proj = rg.get_variable("proj", [4, 2],
                               initializer=rg.random_normal_initializer(stddev=0.5))
        return rg.matmul(state, proj)

left = rg.placeholder(rg.float32, [None, 3, 2], name="left")
right = rg.placeholder(rg.float32, [None, 3, 2], name="right")
code_left = encoder(left)
code_right = encoder(right, reuse=True)
distance = rg.reduce_sum(rg.square(code_left - code_right), axis=1)

rng = np.random.RandomState(0)
a = rng.randn(5, 3, 2).astype(np.float32)
b = rng.randn(5, 3, 2).astype(np.float32)
with rg.Session() as sess:
    sess.run(rg.global_variables_initializer())
    dist_val, same_val = sess.run([distance, code_left], feed_dict={left: a, right: b})
    self_dist = sess.run(distance, feed_dict={left: a, right: a})
    names = [v.name for v in rg.global_variables()]
    values = dict(zip(names, sess.run(rg.global_variables())))
