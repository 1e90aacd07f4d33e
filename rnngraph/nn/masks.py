"""tf.sequence_mask: which steps of each sequence are within its length."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..dtypes import as_dtype, is_integer
from ..errors import user_location
from ..ir.value import Value


def sequence_mask(lengths, maxlen=None, dtype=np.bool_, name=None):
    """A mask of the steps within each sequence's length (tf.sequence_mask).

    lengths: integer tensor of any shape S (a Python list or NumPy array is converted).
    maxlen: a scalar integer (Python int or scalar tensor), the size of the new last axis;
    default: the largest length (known at run time). dtype: of the result (bool by default;
    a float dtype gives 1.0 and 0.0, for weighting a per-step loss).

    Returns a tensor of shape S + [maxlen] with mask[i..., j] = (j < lengths[i...]), cast to
    `dtype`. Example: sequence_mask([1, 3, 2], 5) is
        [[True, False, False, False, False],
         [True, True,  True,  False, False],
         [True, True,  False, False, False]]
    A loss weighted by this mask over a dynamic_rnn's outputs of the same lengths is zero at
    the padded steps, which the memory planner's stream_outputs pass then never runs.

    Built as range(maxlen) < expand_dims(lengths, -1) (then cast), so it is an ordinary
    graph of existing ops: it has no gradient (a bool mask) and exports like them."""
    lengths = lengths if isinstance(lengths, Value) else ops.as_value(
        np.asarray(lengths) if not isinstance(lengths, np.ndarray) else lengths)
    if not is_integer(lengths.dtype):
        raise TypeError(f"sequence_mask at {user_location()}: lengths must be an integer "
                        f"tensor, got {lengths.type}")
    if maxlen is None:
        maxlen = ops.reduce_max(lengths)
    elif isinstance(maxlen, Value):
        if maxlen.type.rank != 0:
            raise ValueError(f"sequence_mask at {user_location()}: maxlen must be a scalar, "
                             f"got {maxlen.type}")
        if not is_integer(maxlen.dtype):
            raise TypeError(f"sequence_mask at {user_location()}: maxlen must be an "
                            f"integer, got {maxlen.type}")
        if maxlen.dtype != lengths.dtype:   # TF1 compares in maxlen's dtype
            lengths = ops.cast(lengths, maxlen.dtype)
    else:
        m = np.asarray(maxlen)
        if m.ndim != 0:
            raise ValueError(f"sequence_mask at {user_location()}: maxlen must be a scalar, "
                             f"got {maxlen!r}")
        if isinstance(maxlen, bool) or not is_integer(m.dtype):
            raise TypeError(f"sequence_mask at {user_location()}: maxlen must be an integer, "
                            f"got {maxlen!r}")
        if int(m) < 0:
            raise ValueError(f"sequence_mask at {user_location()}: maxlen must be >= 0, "
                             f"got {int(m)}")
        maxlen = int(m)
    dtype = as_dtype(dtype)
    steps = ops.range(0, maxlen, 1, dtype=lengths.dtype)
    mask = ops.less(steps, ops.expand_dims(lengths, -1),
                    name=name if dtype == np.bool_ else None)
    if dtype == np.bool_:
        return mask
    return ops.cast(mask, dtype, name=name)
