"""tf.contrib.seq2seq: sequence_loss."""
from ..nn.losses import sequence_loss

__all__ = ["sequence_loss"]
