"""The BLAS-floor table of benchmarks/rnn.py reads the products off the compiled program: check
that what it reads is the program's real work (shapes and FLOPs), for every cell."""
import pytest


def test_lstm_products_are_the_compiled_ones(bench):
    B, T, I, H = 4, 3, 3, 5
    per_step, batched = bench.compiled_products(bench.RnngraphCase("lstm", B, T, I, H), B)
    # h @ W_h forward, dz @ W_h^T backward; projection, input gradient, joined weight gradient
    assert sorted(per_step) == [(B, H, 4 * H), (B, 4 * H, H)]
    assert sorted(batched) == sorted([(T * B, I, 4 * H), (T * B, 4 * H, I),
                                      (I + H + 1, T * B, 4 * H)])


@pytest.mark.parametrize("cell", ["lstm", "gru", "basic"])
def test_products_do_the_cells_flops(bench, cell):
    """3x the forward's FLOPs (the benchmark's count), plus the bias row of the weight
    gradient: nothing left out of the floor, nothing counted twice."""
    B, T, I, H = 6, 4, 3, 5
    per_step, batched = bench.compiled_products(bench.RnngraphCase(cell, B, T, I, H), B)
    done = T * sum(2 * m * k * n for m, k, n in per_step) + \
        sum(2 * m * k * n for m, k, n in batched)
    bias_rows = 2 * T * B * bench.GATES[cell] * H
    assert done == bench.flops(cell, B, T, I, H, backward=True) + bias_rows


def test_product_seconds_times_each_shape_once(bench):
    shapes = [(4, 5, 20), (4, 20, 5), (4, 5, 20)]
    secs = bench.product_seconds(shapes, 1)
    assert sorted(secs) == [(4, 5, 20), (4, 20, 5)]
    assert all(0 < s < 1 for s in secs.values())
