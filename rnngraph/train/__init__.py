"""Training: optimizers (rg.train.AdamOptimizer(...).minimize(loss)) and a fit loop helper."""
from .optimizers import (
    SGD, Adam, AdamOptimizer, GradientDescentOptimizer, Momentum, MomentumOptimizer, Optimizer,
)
