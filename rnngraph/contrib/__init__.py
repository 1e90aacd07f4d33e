"""tf.contrib aliases for TF1 code: `rg.contrib.rnn`, `rg.contrib.layers`, `rg.contrib.seq2seq`,
`rg.contrib.legacy_seq2seq`, `rg.contrib.framework`. Everything here is defined in rnngraph.nn
or rnngraph.train; these modules only give it the names TF1 code imports it by."""
from . import framework, layers, legacy_seq2seq, rnn, seq2seq

__all__ = ["framework", "layers", "legacy_seq2seq", "rnn", "seq2seq"]
