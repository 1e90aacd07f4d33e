"""Data-parallel training across processes and machines, on MPI (mpi4py; `rnngraph[mpi]`).

    import rnngraph as rg
    import rnngraph.distributed as dist

    dist.init()                                   # MPI under mpiexec, one process otherwise
    X = rg.placeholder(rg.float32, [None, T, n])  # ... build the model: loss is a batch mean
    opt = dist.DistributedOptimizer(rg.train.AdamOptimizer(1e-3))
    train_op = opt.minimize(loss)                 # gradients -> one allreduce -> Adam
    sess = rg.Session()
    dist.broadcast_variables(sess, root=0)        # every rank starts from rank 0's weights
    for X_batch, y_batch in batches:              # the same global batches on every rank
        Xs, ys = dist.shard((X_batch, y_batch))   # this rank's part
        sess.run(train_op, feed_dict={X: Xs, y: ys})
    if dist.rank() == 0:                          # rank 0 alone writes checkpoints and logs
        rg.save("model.npz", session=sess, fetches={...})

Run it with `mpiexec -n 4 python train.py` (add `-f hostfile` for several machines) or plain
`python train.py` (one process; mpi4py is not needed). Every rank must build the same graph
(compared by a hash before the first step) and run the training op the same number of times.
"""
from ..errors import DistributedError
from .comm import Communicator, LocalCommunicator
from .mpi import MpiCommunicator
from .threads import ThreadCommunicator
from .world import DEFAULT_TIMEOUT, barrier, current, init, is_initialized, is_root, rank, size
from .op import AllReduceGradients, allreduce_gradients, fingerprint
from . import kernel as _kernel   # noqa: F401  (registers the allreduce node's kernel)
from .optimizer import DistributedOptimizer
from .variables import broadcast_variables
from .shard import shard, shard_bounds

__all__ = ["AllReduceGradients", "Communicator", "DEFAULT_TIMEOUT", "DistributedError",
           "DistributedOptimizer", "LocalCommunicator", "MpiCommunicator",
           "ThreadCommunicator", "allreduce_gradients", "barrier", "broadcast_variables",
           "current", "fingerprint", "init", "is_initialized", "is_root", "rank", "shard",
           "shard_bounds", "size"]
