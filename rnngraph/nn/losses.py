"""Losses and metrics returning scalar Values (means over the batch)."""
from __future__ import annotations

import numpy as np

from .. import ops


def sparse_softmax_cross_entropy(labels, logits):
    """Mean over the batch of -log softmax(logits)[label]."""
    return ops.reduce_mean(ops.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                        logits=logits))


def mean_squared_error(labels, predictions):
    return ops.reduce_mean(ops.square(ops.subtract(predictions, labels)))


def in_top_k(predictions, targets, k: int = 1):
    """Bool [batch]: is the target among the top-k predictions (only k=1 is supported)."""
    if k != 1:
        raise NotImplementedError("in_top_k supports k=1")
    return ops.equal(ops.argmax(predictions, axis=-1), ops.cast(targets, np.int64))


def accuracy(labels, logits):
    """Fraction of rows whose argmax equals the label (a float32 scalar)."""
    return ops.reduce_mean(ops.cast(in_top_k(logits, labels), np.float32))


# --- tf.nn losses ---------------------------------------------------------------------------------
def _labels_logits(fn, _sentinel, labels, logits):
    if _sentinel is not None:
        raise ValueError(f"{fn}: call it with named arguments (labels=..., logits=...)")
    if labels is None or logits is None:
        raise ValueError(f"{fn}: both labels and logits must be given")
    logits = ops.as_value(logits)
    labels = ops.as_value(labels, logits.dtype)
    if not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"{fn}: logits must be floating point, got {logits.dtype.name}")
    if labels.dtype != logits.dtype:
        raise TypeError(f"{fn}: labels are {labels.dtype.name} but logits are "
                        f"{logits.dtype.name}")
    return labels, logits


def softmax_cross_entropy_with_logits_v2(_sentinel=None, labels=None, logits=None, axis=None,
                                         name=None, dim=None):
    """-sum(labels * log_softmax(logits), axis) per row
    (tf.nn.softmax_cross_entropy_with_logits_v2): labels are probability distributions; the
    gradient flows into both labels and logits."""
    labels, logits = _labels_logits("softmax_cross_entropy_with_logits_v2", _sentinel, labels,
                                    logits)
    if axis is not None and dim is not None:
        raise ValueError("softmax_cross_entropy_with_logits_v2: give axis or dim, not both")
    axis = -1 if axis is None and dim is None else (axis if axis is not None else dim)
    return ops.negative(ops.reduce_sum(labels * ops.log_softmax(logits, axis=axis), axis=axis),
                        name=name)


def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, dim=-1,
                                      name=None, axis=None):
    """As softmax_cross_entropy_with_logits_v2, but no gradient flows into `labels` (TF1's
    deprecated form)."""
    labels, logits = _labels_logits("softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    return softmax_cross_entropy_with_logits_v2(labels=ops.stop_gradient(labels), logits=logits,
                                                axis=dim if axis is None else axis, name=name)


def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """Elementwise logistic loss z * -log(sigmoid(x)) + (1 - z) * -log(1 - sigmoid(x)), computed
    stably as max(x, 0) - x * z + log(1 + exp(-|x|)) (tf.nn.sigmoid_cross_entropy_with_logits)."""
    z, x = _labels_logits("sigmoid_cross_entropy_with_logits", _sentinel, labels, logits)
    return ops.add(ops.relu(x) - x * z, ops.log(1.0 + ops.exp(ops.negative(ops.abs(x)))),
                   name=name)


def l2_loss(t, name=None):
    """sum(t ** 2) / 2 (tf.nn.l2_loss): a scalar."""
    t = ops.as_value(t)
    return ops.multiply(ops.reduce_sum(ops.square(t)), 0.5, name=name)


def embedding_lookup(params, ids, partition_strategy="mod", name=None, validate_indices=True,
                     max_norm=None):
    """Rows of `params` [vocab, dim] at int `ids` of any shape: [*ids.shape, dim]
    (tf.nn.embedding_lookup). `params` may be a list holding one tensor; sharded lists and
    max_norm are not supported. Ids outside [0, vocab) raise at run time."""
    if isinstance(params, (list, tuple)):
        if len(params) != 1:
            raise NotImplementedError(f"embedding_lookup: params split into {len(params)} "
                                      "shards is not supported; pass one tensor")
        params = params[0]
    if max_norm is not None:
        raise NotImplementedError("embedding_lookup: the argument max_norm= is not supported")
    if partition_strategy not in ("mod", "div"):
        raise ValueError(f"embedding_lookup: partition_strategy must be 'mod' or 'div', got "
                         f"{partition_strategy!r}")
    params, ids = ops.as_value(params), ops.as_value(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"embedding_lookup: ids must be int32 or int64, got {ids.dtype.name}")
    return ops.gather(params, ids, name=name)


# --- seq2seq losses -----------------------------------------------------------------------------
def _count_nonzero(w, axis=None):
    return ops.reduce_sum(ops.cast(ops.not_equal(w, ops.zeros_like(w)), w.dtype), axis=axis)


def _div_no_nan(x, y):
    safe = ops.where(ops.equal(y, ops.zeros_like(y)), ops.ones_like(y), y)
    return ops.where(ops.equal(y, ops.zeros_like(y)), ops.zeros_like(x), x / safe)


def sequence_loss(logits, targets, weights, average_across_timesteps=True,
                  average_across_batch=True, sum_over_timesteps=False, sum_over_batch=False,
                  softmax_loss_function=None, name=None):
    """Weighted cross-entropy of a batch of sequences (tf.contrib.seq2seq.sequence_loss).

    logits [batch, T, classes], targets [batch, T] ints, weights [batch, T] floats. With both
    averages (the default): sum(xent * weights) / sum(weights); with one average, that ratio
    along the batch or time axis only; with the sum_over_* flags, divided by the count of
    non-zero weights instead. `softmax_loss_function(labels=, logits=)` replaces the sparse
    softmax cross-entropy."""
    logits, targets, weights = (ops.as_value(logits), ops.as_value(targets),
                                ops.as_value(weights))
    if logits.type.rank != 3:
        raise ValueError(f"sequence_loss: logits must be [batch, T, classes], got {logits.type}")
    if targets.type.rank != 2 or weights.type.rank != 2:
        raise ValueError(f"sequence_loss: targets and weights must be [batch, T], got "
                         f"{targets.type} and {weights.type}")
    if average_across_timesteps and sum_over_timesteps:
        raise ValueError("sequence_loss: average_across_timesteps and sum_over_timesteps cannot "
                         "be set to True at same time")
    if average_across_batch and sum_over_batch:
        raise ValueError("sequence_loss: average_across_batch and sum_over_batch cannot be set "
                         "to True at same time")
    if average_across_batch and sum_over_timesteps:
        raise ValueError("sequence_loss: average_across_batch and sum_over_timesteps cannot be "
                         "set to True at same time because of ambiguous order")
    if sum_over_batch and average_across_timesteps:
        raise ValueError("sequence_loss: sum_over_batch and average_across_timesteps cannot be "
                         "set to True at same time because of ambiguous order")
    classes = logits.shape[-1]
    flat_logits = ops.reshape(logits, [-1, classes])
    flat_targets = ops.reshape(targets, [-1])
    if softmax_loss_function is None:
        xent = ops.sparse_softmax_cross_entropy_with_logits(labels=flat_targets,
                                                            logits=flat_logits)
    else:
        xent = softmax_loss_function(labels=flat_targets, logits=flat_logits)
    xent = xent * ops.reshape(weights, [-1])
    if average_across_timesteps and average_across_batch:
        return ops.divide(ops.reduce_sum(xent), ops.reduce_sum(weights) + 1e-12, name=name)
    if sum_over_timesteps and sum_over_batch:
        return _div_no_nan(ops.reduce_sum(xent), _count_nonzero(weights))
    xent = ops.reshape_like(xent, targets)
    if average_across_timesteps or average_across_batch:
        axis = 0 if average_across_batch else 1
        return ops.divide(ops.reduce_sum(xent, axis=axis),
                          ops.reduce_sum(weights, axis=axis) + 1e-12, name=name)
    if sum_over_timesteps or sum_over_batch:
        axis = 0 if sum_over_batch else 1
        return _div_no_nan(ops.reduce_sum(xent, axis=axis), _count_nonzero(weights, axis))
    return xent


def sequence_loss_by_example(logits, targets, weights, average_across_timesteps=True,
                             softmax_loss_function=None, name=None):
    """tf.contrib.legacy_seq2seq.sequence_loss_by_example: lists of T logits [batch, classes],
    targets [batch] and weights [batch]; per example sum_t xent_t * w_t (divided by sum_t w_t
    when average_across_timesteps). Returns [batch]."""
    if not (len(logits) == len(targets) == len(weights)) or not logits:
        raise ValueError(f"sequence_loss_by_example: logits, targets and weights must be "
                         f"non-empty lists of one length, got {len(logits)}, {len(targets)}, "
                         f"{len(weights)}")
    terms = []
    for lg, tg, w in zip(logits, targets, weights):
        if softmax_loss_function is None:
            xent = ops.sparse_softmax_cross_entropy_with_logits(labels=ops.reshape(tg, [-1]),
                                                                logits=lg)
        else:
            xent = softmax_loss_function(labels=tg, logits=lg)
        terms.append(xent * w)
    total = ops.add_n(terms) if len(terms) > 1 else terms[0]
    if average_across_timesteps:
        wsum = (ops.add_n(list(weights)) if len(weights) > 1 else ops.as_value(weights[0])) \
            + 1e-12
        total = total / wsum
    return total


def legacy_sequence_loss(logits, targets, weights, average_across_timesteps=True,
                         average_across_batch=True, softmax_loss_function=None, name=None):
    """tf.contrib.legacy_seq2seq.sequence_loss: the sum over the batch of
    sequence_loss_by_example, divided by the batch size when average_across_batch."""
    cost = ops.reduce_sum(sequence_loss_by_example(
        logits, targets, weights, average_across_timesteps, softmax_loss_function))
    if average_across_batch:
        batch = ops.cast(ops.dim(ops.as_value(targets[0]), 0), cost.dtype)
        return ops.divide(cost, batch, name=name)
    return cost


# --- sampled losses -------------------------------------------------------------------------------
_FLOAT_MAX = float(np.finfo(np.float32).max)


def _sampled_logits(fn, weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                    sampled_values, remove_accidental_hits, partition_strategy, seed):
    """(logits [batch, num_true + num_sampled], labels of the same shape) as TF's
    _compute_sampled_logits: true and sampled classes' logits, minus log expected count."""
    if partition_strategy not in ("mod", "div"):
        raise ValueError(f"{fn}: partition_strategy must be 'mod' or 'div', got "
                         f"{partition_strategy!r}")
    if isinstance(weights, (list, tuple)):
        if len(weights) != 1:
            raise NotImplementedError(f"{fn}: weights split into {len(weights)} shards is not "
                                      "supported; pass one tensor")
        weights = weights[0]
    weights, biases, inputs = ops.as_value(weights), ops.as_value(biases), ops.as_value(inputs)
    labels = ops.cast(ops.as_value(labels), np.int64)
    if labels.type.rank == 1:
        labels = ops.expand_dims(labels, 1)
    if labels.type.rank != 2 or labels.shape[1] not in (None, num_true):
        raise ValueError(f"{fn}: labels must be [batch, num_true={num_true}], got {labels.type}")
    if inputs.type.rank != 2 or weights.type.rank != 2:
        raise ValueError(f"{fn}: inputs must be [batch, dim] and weights [num_classes, dim], "
                         f"got {inputs.type} and {weights.type}")
    if sampled_values is None:
        sampled_values = ops.log_uniform_candidate_sampler(labels, num_true, num_sampled, True,
                                                           num_classes, seed=seed)
    sampled, true_expected, sampled_expected = (ops.as_value(v) for v in sampled_values)
    sampled = ops.stop_gradient(ops.cast(sampled, np.int64))
    true_expected = ops.stop_gradient(ops.cast(true_expected, inputs.dtype))
    sampled_expected = ops.stop_gradient(ops.cast(sampled_expected, inputs.dtype))
    true_w = ops.gather(weights, labels)                          # [batch, num_true, dim]
    true_logits = ops.reduce_sum(ops.expand_dims(inputs, 1) * true_w, axis=2) \
        + ops.gather(biases, labels) - ops.log(true_expected)
    sampled_logits = ops.matmul(inputs, ops.gather(weights, sampled), transpose_b=True) \
        + ops.gather(biases, sampled) - ops.log(sampled_expected)
    if remove_accidental_hits:   # a sampled class that is one of the row's labels drops out
        hits = ops.equal(ops.expand_dims(labels, 2), ops.reshape(sampled, [1, 1, -1]))
        hit = ops.reduce_max(ops.cast(hits, inputs.dtype), axis=1)   # [batch, num_sampled]
        sampled_logits = sampled_logits - hit * _FLOAT_MAX
    logits = ops.concat([true_logits, sampled_logits], 1)
    targets = ops.concat([ops.ones_like(true_logits) / float(num_true),
                          ops.zeros_like(sampled_logits)], 1)
    return logits, targets


def sampled_softmax_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1,
                         sampled_values=None, remove_accidental_hits=True,
                         partition_strategy="mod", name="sampled_softmax_loss", seed=None):
    """Softmax cross-entropy over the true classes and `num_sampled` classes drawn from the
    log-uniform sampler (tf.nn.sampled_softmax_loss): [batch] losses, for training only.
    weights [num_classes, dim], biases [num_classes], labels [batch, num_true] ints, inputs
    [batch, dim]. `sampled_values` (sampled, true_expected_count, sampled_expected_count), as
    log_uniform_candidate_sampler returns them, replaces the sampler."""
    logits, targets = _sampled_logits("sampled_softmax_loss", weights, biases, labels, inputs,
                                      num_sampled, num_classes, num_true, sampled_values,
                                      remove_accidental_hits, partition_strategy, seed)
    return softmax_cross_entropy_with_logits_v2(labels=ops.stop_gradient(targets),
                                                logits=logits)


def nce_loss(weights, biases, labels, inputs, num_sampled, num_classes, num_true=1,
             sampled_values=None, remove_accidental_hits=False, partition_strategy="mod",
             name="nce_loss", seed=None):
    """Noise-contrastive estimation (tf.nn.nce_loss): per row, the sum of the logistic losses of
    the true classes (label 1 / num_true) and the sampled ones (label 0); [batch] losses.
    Arguments as sampled_softmax_loss's."""
    logits, targets = _sampled_logits("nce_loss", weights, biases, labels, inputs, num_sampled,
                                      num_classes, num_true, sampled_values,
                                      remove_accidental_hits, partition_strategy, seed)
    return ops.reduce_sum(sigmoid_cross_entropy_with_logits(labels=ops.stop_gradient(targets),
                                                            logits=logits), axis=1)
