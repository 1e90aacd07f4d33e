"""Training: optimizers (rg.train.AdamOptimizer(...).minimize(loss)), the global step and
learning-rate schedules, gradient clipping, checkpoints (Saver) and the training-history
helpers the demo uses (history.py)."""
from .optimizers import (
    SGD, Adam, AdagradOptimizer, AdamOptimizer, GradientDescentOptimizer, Momentum,
    MomentumOptimizer, Optimizer, RMSPropOptimizer,
)
from .schedules import (
    cosine_decay, create_global_step, exponential_decay, get_global_step,
    get_or_create_global_step, piecewise_constant, polynomial_decay,
)
from .clipping import clip_by_global_norm, clip_by_norm, clip_by_value, global_norm
from .saver import (
    CheckpointState, Saver, checkpoint_exists, get_checkpoint_state, latest_checkpoint,
)
from . import history
from .history import History
