"""The peak model against the measured peak for the forward and backward pass of every op's
gradient-check case (tests/test_op_gradients.py): views, copies, broadcasts and pieces of
one buffer counted as the executor's byte meter counts them.

NumPy returns a reduction to a 0-d value as a scalar, which the meter does not see, where the
model counts its 8 bytes: a prediction may be that much above, never below."""
import numpy as np
import pytest

import rnngraph as rg
from rnngraph.runtime.simulated import SimulatedDevice

from test_op_gradients import CASES


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_the_predicted_peak_of_each_op_case_is_the_measured_one(c):
    g = rg.Graph()
    with g.as_default():
        phs = {k: rg.placeholder(rg.float64, np.shape(v), name=k) for k, v in c.inputs.items()}
        out = c.build(**phs)
        outs = out if isinstance(out, list) else [out]
        loss = rg.add_n([rg.reduce_sum(o) for o in outs])
        grads = [x for x in rg.gradients(loss, list(phs.values())) if x is not None]
    fd = {phs[k]: np.asarray(v, np.float64) for k, v in c.inputs.items()}
    sess = rg.Session(g, device=SimulatedDevice())
    plan = sess.memory_plan([loss] + grads, fd)
    sess.run([loss] + grads, fd, report=True)
    measured = sess.last_run_report.peak_bytes
    assert 0 <= plan.predicted_peak - measured <= 16, (plan.predicted_peak, measured)
