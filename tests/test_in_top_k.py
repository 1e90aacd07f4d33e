"""tf.nn.in_top_k with any k, TF1's ties and invalid rows, against a loop written by hand."""
import warnings

import numpy as np
import pytest

import rnngraph as rg


def _reference(p, t, k):
    """TF1's kernel: False for an out-of-range target or any non-finite prediction in the row,
    else fewer than k predictions strictly larger than the target's."""
    out = []
    for row, target in zip(p, t):
        if not 0 <= target < len(row) or not np.all(np.isfinite(row)):
            out.append(False)
        else:
            out.append(int(np.sum(row > row[target])) < k)
    return np.array(out, dtype=bool)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_top_k_matches_the_reference_with_ties_and_invalid_rows(dtype):
    rs = np.random.RandomState(0)
    sess = rg.Session()
    seen_ties = seen_invalid = 0
    for trial in range(40):
        b, c = rs.randint(1, 6), rs.randint(1, 7)
        p = rs.randint(0, 4, size=(b, c)).astype(dtype)   # small ints: many ties
        if trial % 4 == 0:
            p[0, rs.randint(c)] = rs.choice([np.inf, -np.inf, np.nan])
        t = rs.randint(-1, c + 1, size=b).astype(np.int32)
        seen_invalid += int(np.any((t < 0) | (t >= c)) or trial % 4 == 0)
        seen_ties += int(any(np.sum(row == row[x]) > 1 for row, x in zip(p, t) if 0 <= x < c))
        for k in range(0, c + 2):
            with warnings.catch_warnings():
                warnings.simplefilter("error")   # inf and NaN rows warn nothing
                got = sess.run(rg.nn.in_top_k(rg.constant(p), rg.constant(t), k))
            np.testing.assert_array_equal(got, _reference(p, t, k), err_msg=f"{p}, {t}, k={k}")
    assert seen_ties > 10 and seen_invalid > 5


def test_in_top_k_tie_at_the_top_counts_as_in():
    p = np.array([[0.4, 0.4, 0.2], [0.1, 0.5, 0.4]], np.float32)
    got = rg.Session().run(rg.nn.in_top_k(rg.constant(p), rg.constant([1, 2]), 1))
    np.testing.assert_array_equal(got, [True, False])


def test_in_top_k_fed_int64_targets():
    p = rg.placeholder(rg.float32, [None, 4])
    t = rg.placeholder(rg.int64, [None])
    out = rg.nn.in_top_k(p, t, 2)
    pv = np.array([[1, 4, 3, 2], [5, 1, 1, 0]], np.float32)
    got = rg.Session().run(out, {p: pv, t: np.array([2, 1], np.int64)})
    np.testing.assert_array_equal(got, [True, True])


@pytest.mark.parametrize("k", [-1, 1.5, True, "2"])
def test_in_top_k_bad_k(k):
    with pytest.raises(ValueError, match="in_top_k: k"):
        rg.nn.in_top_k(rg.constant(np.zeros((2, 3), np.float32)), rg.constant([0, 1]), k)


def test_in_top_k_bad_shapes():
    with pytest.raises(ValueError, match=r"predictions must be \[batch, classes\]"):
        rg.nn.in_top_k(rg.constant(np.zeros(3, np.float32)), rg.constant([0]), 1)
    with pytest.raises(ValueError, match="targets must be an int vector"):
        rg.nn.in_top_k(rg.constant(np.zeros((2, 3), np.float32)), rg.constant([0.0, 1.0]), 1)
