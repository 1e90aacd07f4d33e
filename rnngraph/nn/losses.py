"""Losses and metrics returning scalar Values (means over the batch)."""
from __future__ import annotations

import numbers

import numpy as np

from .. import ops
from ..errors import located
from ..ir.graph import get_default_graph
from ..ir.value import Value


class Reduction:
    """How a tf.losses function reduces its weighted per-element losses (tf.losses.Reduction)."""
    NONE = "none"                                            # the weighted losses themselves
    SUM = "weighted_sum"                                     # their sum
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"     # sum / number of elements
    MEAN = "weighted_mean"                                   # sum / sum of the weights
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"   # sum / nonzero weights
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls) -> tuple:
        return (cls.NONE, cls.SUM, cls.SUM_OVER_BATCH_SIZE, cls.MEAN, cls.SUM_BY_NONZERO_WEIGHTS)


LOSSES = "losses"   # the root graph's collection of losses, as TF1's GraphKeys.LOSSES


@located
def compute_weighted_loss(losses, weights=1.0, scope=None, loss_collection=LOSSES,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """`losses * weights` reduced as `reduction` says (tf.losses.compute_weighted_loss).

    `weights` is a number or a tensor of the losses' rank whose every dimension is 1 or the
    losses' (a [batch, time] mask of a sequence loss). The default divides the weighted sum by
    the number of nonzero weights (0 where all are zero): a mean over the weighted elements.
    The loss is added to the root graph's `loss_collection` (None: none); get_total_loss sums
    that collection."""
    _check_arguments(weights, _shape_of(losses), reduction)
    losses = ops.as_value(losses)
    graph = get_default_graph()
    with graph.name_scope(scope or "weighted_loss"):
        if isinstance(weights, numbers.Real) and not isinstance(weights, bool):
            loss = _scalar_weighted(losses, float(weights), reduction)
        else:
            loss = _tensor_weighted(losses, _broadcastable_weights(weights, losses), reduction)
    if loss_collection:
        graph.root.collections.setdefault(loss_collection, []).append(loss)
    return loss


def _scalar_weighted(losses, w: float, reduction):
    """The reductions of a number-weighted loss (the plain mean for the default weight 1)."""
    if reduction == Reduction.NONE:
        return losses if w == 1.0 else losses * w
    if reduction == Reduction.SUM:
        total = ops.reduce_sum(losses)
        return total if w == 1.0 else total * w
    if w == 0.0:   # nothing weighted: TF1 gives 0 (its safe division)
        return ops.reduce_sum(losses) * 0.0
    mean = ops.reduce_mean(losses)
    if reduction == Reduction.SUM_OVER_BATCH_SIZE and w != 1.0:
        return mean * w
    if reduction == Reduction.SUM_BY_NONZERO_WEIGHTS and w != 1.0:
        return mean * w
    return mean   # MEAN: sum(w * l) / sum(w) is the mean for any nonzero w


def _shape_of(x) -> tuple:
    return tuple(x.shape) if isinstance(x, Value) else np.shape(x)


def _broadcast(a: tuple, b: tuple) -> tuple:
    """The broadcast of two static shapes, None where a dimension is not known."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    return tuple(y if x == 1 else x if y == 1 else (x if x == y else None)
                 for x, y in zip(a, b))


def _check_arguments(weights, loss_shape, reduction) -> None:
    """Refuse a reduction or weights that cannot apply, before any node is made."""
    if reduction not in Reduction.all():
        raise ValueError(f"reduction must be one of rg.losses.Reduction's {Reduction.all()}, "
                         f"got {reduction!r}")
    if isinstance(weights, numbers.Real):
        return
    ws, ls = _shape_of(weights), tuple(loss_shape)
    if len(ws) != 0 and (len(ws) != len(ls) or any(
            w is not None and l is not None and w not in (1, l) for w, l in zip(ws, ls))):
        raise ValueError(f"weights of shape {list(ws)} cannot weight losses of shape "
                         f"{list(ls)}: give a number, or a tensor of rank {len(ls)} whose every "
                         "dimension is 1 or the losses'")


def _broadcastable_weights(weights, losses):
    weights = ops.as_value(weights, losses.dtype)
    if weights.dtype != losses.dtype:
        weights = ops.cast(weights, losses.dtype)
    return weights


def _safe_divide(total, count):
    """total / count, 0 where count is 0 (TF1's div_no_nan)."""
    empty = ops.equal(count, ops.zeros_like(count))
    return ops.where(empty, ops.zeros_like(total),
                     total / ops.where(empty, ops.ones_like(count), count))


def _spread(losses, weights):
    """How many loss elements each weight stands for (the product of the losses' sizes along
    the axes the weights are broadcast along): a number where the sizes are static, else read
    from the shapes, never the values (so a streamed loss keeps its per-step form)."""
    known, read = 1, []
    ws, ls = (() if weights is None else weights.shape), losses.shape   # None: every element
    for i, l in enumerate(ls):
        w = ws[i] if len(ws) else 1
        if w is not None and w != 1 or l == 1:
            continue   # one weight per element along this axis
        if l is not None and w == 1:
            known *= l
        elif w == 1:
            read.append(ops.cast(ops.dim(losses, i), losses.dtype))
        # (a weight axis of unknown size has the losses' size: rnngraph broadcasts only
        # dimensions known to be 1)
    size = float(known)
    for r in read:
        size = r * size
    return size


def _tensor_weighted(losses, weights, reduction):
    weighted = losses * weights
    if reduction == Reduction.NONE:
        return weighted
    total = ops.reduce_sum(weighted)
    if reduction == Reduction.SUM:
        return total
    if reduction == Reduction.SUM_OVER_BATCH_SIZE:
        return total / _spread(losses, None)
    count = weights if reduction == Reduction.MEAN else \
        ops.cast(ops.not_equal(weights, ops.zeros_like(weights)), losses.dtype)
    return _safe_divide(total, ops.reduce_sum(count) * _spread(losses, weights))


@located
def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None,
                                 loss_collection=LOSSES,
                                 reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """-log softmax(logits)[label] per element, weighted and reduced as compute_weighted_loss
    (tf.losses.sparse_softmax_cross_entropy): by default the mean over the batch, or over the
    nonzero weights (a sequence mask)."""
    _check_arguments(weights, _shape_of(labels), reduction)
    with get_default_graph().name_scope(scope or "sparse_softmax_cross_entropy_loss"):
        losses = ops.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


@located
def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """-sum(labels * log_softmax(logits)) per row, weighted and reduced as compute_weighted_loss
    (tf.losses.softmax_cross_entropy): `onehot_labels` [batch, classes] (cast to the logits'
    dtype; no gradient flows into them), `weights` a number or one weight per row. With
    label_smoothing > 0 the labels become labels * (1 - s) + s / classes."""
    if onehot_labels is None:
        raise ValueError("softmax_cross_entropy: onehot_labels must not be None")
    if logits is None:
        raise ValueError("softmax_cross_entropy: logits must not be None")
    if isinstance(label_smoothing, Value) or isinstance(label_smoothing, bool) or \
            not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"softmax_cross_entropy: label_smoothing must be a number, got "
                        f"{label_smoothing!r}")
    logits = ops.as_value(logits)
    if not np.issubdtype(logits.dtype, np.floating):
        raise TypeError(f"softmax_cross_entropy: logits must be floating point, got "
                        f"{logits.dtype.name}")
    labels = ops.as_value(onehot_labels, logits.dtype)
    ls, gs = tuple(labels.shape), tuple(logits.shape)
    if len(ls) != len(gs) or any(a is not None and b is not None and a != b
                                 for a, b in zip(ls, gs)):
        raise ValueError(f"softmax_cross_entropy: onehot_labels of shape {list(ls)} and logits "
                         f"of shape {list(gs)} must have the same shape")
    _check_arguments(weights, gs[:-1], reduction)
    with get_default_graph().name_scope(scope or "softmax_cross_entropy_loss"):
        if labels.dtype != logits.dtype:
            labels = ops.cast(labels, logits.dtype)
        if label_smoothing > 0:
            n = gs[-1]
            classes = float(n) if n is not None else ops.cast(ops.dim(labels, -1), logits.dtype)
            labels = labels * (1.0 - float(label_smoothing)) + float(label_smoothing) / classes
        labels = ops.stop_gradient(labels)
        losses = ops.negative(ops.reduce_sum(labels * ops.log_softmax(logits, axis=-1), axis=-1),
                              name="xentropy")
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


@located
def mean_squared_error(labels, predictions, weights=1.0, scope=None, loss_collection=LOSSES,
                       reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """(predictions - labels)^2 per element, weighted and reduced as compute_weighted_loss
    (tf.losses.mean_squared_error): by default the mean."""
    _check_arguments(weights, _broadcast(_shape_of(labels), _shape_of(predictions)), reduction)
    with get_default_graph().name_scope(scope or "mean_squared_error"):
        losses = ops.square(ops.subtract(predictions, labels))
        return compute_weighted_loss(losses, weights, None, loss_collection, reduction)


def add_loss(loss, loss_collection=LOSSES):
    """Add `loss` to the root graph's `loss_collection` (tf.losses.add_loss)."""
    if loss_collection:
        get_default_graph().root.collections.setdefault(loss_collection, []).append(
            ops.as_value(loss))


def get_losses(scope=None, loss_collection=LOSSES) -> list:
    """The losses in `loss_collection` (whose names start with `scope`, when given)."""
    found = list(get_default_graph().root.collections.get(loss_collection, []))
    return [v for v in found if scope is None or v.node.name.startswith(scope)]


REGULARIZATION_LOSSES = "regularization_losses"   # TF1's GraphKeys.REGULARIZATION_LOSSES


def get_regularization_losses(scope=None) -> list:
    """The losses added to the REGULARIZATION_LOSSES collection (rg.add_to_collection)."""
    return get_losses(scope, REGULARIZATION_LOSSES)


def get_regularization_loss(scope=None, name="total_regularization_loss"):
    """Their sum (0.0 when there are none), as tf.losses.get_regularization_loss."""
    losses = get_regularization_losses(scope)
    if not losses:
        return ops.constant(0.0, name=name)
    return ops.add_n(losses, name=name) if len(losses) > 1 else ops.identity(losses[0], name=name)


def get_total_loss(add_regularization_losses=True, name="total_loss", scope=None):
    """The sum of get_losses(scope) and, with `add_regularization_losses`, of
    get_regularization_losses(scope) (tf.losses.get_total_loss)."""
    losses = get_losses(scope)
    if add_regularization_losses:
        losses += get_regularization_losses(scope)
    if not losses:
        raise ValueError("get_total_loss: no losses were made (tf.losses functions and add_loss "
                         "add them)")
    return ops.add_n(losses, name=name) if len(losses) > 1 else ops.identity(losses[0],
                                                                              name=name)


@located
def in_top_k(predictions, targets, k: int = 1):
    """Bool [batch]: is row i's target class among its k largest predictions (tf.nn.in_top_k).

    Classes tied with the k-th largest all count as in the top k (fewer than k predictions
    are strictly larger than the target's). A row with a non-finite prediction, or whose
    target is outside [0, classes), is False, as TF1's kernel says."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"in_top_k: k must be an int >= 0, got {k!r}")
    predictions = ops.as_value(predictions)
    targets = ops.as_value(targets)
    if predictions.type.rank != 2 or predictions.shape[-1] is None:
        raise ValueError(f"in_top_k: predictions must be [batch, classes] with the classes "
                         f"known, got {predictions.type}")
    if targets.type.rank != 1 or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"in_top_k: targets must be an int vector [batch], got {targets.type}")
    classes = predictions.shape[-1]
    inf = ops.constant(np.inf, predictions.dtype)
    is_target = ops.equal(ops.one_hot(targets, classes, dtype=predictions.dtype), 1)
    # the target's prediction; -inf where the target is out of range (no class matches)
    target = ops.reduce_max(ops.where(is_target, predictions, -inf), -1)
    larger = ops.reduce_sum(ops.cast(ops.greater(predictions, ops.expand_dims(target, -1)),
                                     np.int32), -1)
    # comparisons, not arithmetic, so that inf and NaN raise no floating-point warnings
    finite = ops.logical_and(ops.less(predictions, inf), ops.greater(predictions, -inf))
    finite = ops.equal(ops.reduce_sum(ops.cast(ops.logical_not(finite), np.int32), -1), 0)
    valid = ops.logical_and(finite, ops.greater(target, -inf))
    return ops.logical_and(valid, ops.less(larger, k))


@located
def accuracy(labels, logits):
    """Fraction of rows whose argmax equals the label (a float32 scalar)."""
    hits = ops.equal(ops.argmax(logits, axis=-1), ops.cast(labels, np.int64))
    return ops.reduce_mean(ops.cast(hits, np.float32))


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


@located
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


@located
def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, dim=-1,
                                      name=None, axis=None):
    """As softmax_cross_entropy_with_logits_v2, but no gradient flows into `labels` (TF1's
    deprecated form)."""
    labels, logits = _labels_logits("softmax_cross_entropy_with_logits", _sentinel, labels, logits)
    return softmax_cross_entropy_with_logits_v2(labels=ops.stop_gradient(labels), logits=logits,
                                                axis=dim if axis is None else axis, name=name)


@located
def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """Elementwise logistic loss z * -log(sigmoid(x)) + (1 - z) * -log(1 - sigmoid(x)), computed
    stably as max(x, 0) - x * z + log(1 + exp(-|x|)) (tf.nn.sigmoid_cross_entropy_with_logits)."""
    z, x = _labels_logits("sigmoid_cross_entropy_with_logits", _sentinel, labels, logits)
    return ops.add(ops.relu(x) - x * z, ops.log(1.0 + ops.exp(ops.negative(ops.abs(x)))),
                   name=name)


@located
def l2_loss(t, name=None):
    """sum(t ** 2) / 2 (tf.nn.l2_loss): a scalar."""
    t = ops.as_value(t)
    return ops.multiply(ops.reduce_sum(ops.square(t)), 0.5, name=name)


@located
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


@located
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


@located
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


@located
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


@located
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


@located
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
