# tf.InteractiveSession with eval(), a shape-less placeholder, matmul(transpose_b=) and tf.range.
import numpy as np
import rnngraph as rg

rg.reset_default_graph()
config = rg.ConfigProto()
config.gpu_options.allow_growth = True
sess = rg.InteractiveSession(config=config)

scale = rg.placeholder(rg.float32)
A = rg.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
B = rg.Variable(rg.ones([4, 3]) * 0.5)
product = rg.matmul(A, B, transpose_b=True) * scale
idx = rg.range(0, 4, 2)
picked = rg.gather(rg.transpose(product), idx)
rg.global_variables_initializer().run()
product_val = product.eval(feed_dict={scale: 2.0})
picked_val = picked.eval(feed_dict={scale: 2.0})
noop = rg.no_op()
sess.run(noop)
sess.close()
