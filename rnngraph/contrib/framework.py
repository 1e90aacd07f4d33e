"""tf.contrib.framework: the global-step functions (defined in rnngraph.train)."""
from ..train.schedules import create_global_step, get_global_step, get_or_create_global_step

__all__ = ["create_global_step", "get_global_step", "get_or_create_global_step"]
