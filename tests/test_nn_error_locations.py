"""Build-time errors of the rg.nn builders (cells, unrolling, layers, losses) name the user's line,
keep their type and message, and leave errors that already say where alone."""
import inspect

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import located


def _here(offset: int) -> str:
    """'test_nn_error_locations.py:N' for the caller's line plus offset."""
    return f"test_nn_error_locations.py:{inspect.currentframe().f_back.f_lineno + offset}"


def test_dynamic_rnn_errors_name_the_callers_line():
    x = rg.placeholder(rg.float32, [None, 4, 3])
    where = _here(2)
    with pytest.raises(ValueError, match="give either initial_state or dtype") as e:
        rg.nn.dynamic_rnn(rg.nn.GRUCell(2), x)
    assert str(e.value).endswith(f"(at {where})")
    where = _here(2)
    with pytest.raises(TypeError, match="sequence_length must be int32/int64") as e:
        rg.nn.dynamic_rnn(rg.nn.GRUCell(2), x, sequence_length=rg.placeholder(rg.float32, [None]),
                          dtype=rg.float32)
    assert str(e.value).endswith(f"(at {where})")


def test_cell_dense_and_loss_errors_name_the_callers_line():
    where = _here(2)
    with pytest.raises(ValueError, match="num_units must be a positive int") as e:
        rg.nn.LSTMCell("32")
    assert where in str(e.value)
    where = _here(2)
    with pytest.raises(ValueError, match="dense: the last dimension") as e:
        rg.layers.dense(rg.placeholder(rg.float32, [None, None]), 3)
    assert where in str(e.value)
    where = _here(2)
    with pytest.raises(TypeError, match="ids must be int32 or int64") as e:
        rg.nn.embedding_lookup(rg.constant(np.zeros((3, 2), np.float32)), rg.constant([0.0]))
    assert where in str(e.value)


def test_a_cell_called_on_int_inputs_names_the_callers_line():
    cell = rg.nn.GRUCell(2)
    where = _here(2)
    with pytest.raises(ValueError, match="inputs must be floating point") as e:
        cell(rg.placeholder(rg.int32, [None, 3]), cell.zero_state(1, rg.float32))
    assert where in str(e.value)


def test_located_adds_the_line_once_and_only_to_plain_errors():
    # bidirectional_dynamic_rnn calls dynamic_rnn: both are located, the line appears once
    x = rg.placeholder(rg.float32, [None, 4, 3])
    where = _here(2)
    with pytest.raises(ValueError) as e:
        rg.nn.bidirectional_dynamic_rnn(rg.nn.GRUCell(2), rg.nn.GRUCell(2), x)
    assert str(e.value).count("(at ") == 1 and str(e.value).endswith(f"(at {where})")

    class Custom(ValueError):
        pass

    @located
    def custom():
        raise Custom("kept as it is")

    with pytest.raises(Custom) as e:
        custom()
    assert str(e.value) == "kept as it is"

    @located
    def two_args():
        raise TypeError("a", 1)

    with pytest.raises(TypeError) as e:
        two_args()
    assert e.value.args == ("a", 1)


def test_located_keeps_the_return_value_and_the_signature():
    @located
    def f(a, b=2):
        """doc"""
        return a + b

    assert f(1) == 3 and f.__doc__ == "doc" and f.__name__ == "f"
