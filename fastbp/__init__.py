"""fastbp: train dense neural networks by backpropagation, fast, on a multicore CPU.

>>> import fastbp as fb
>>> model = fb.Sequential([fb.Dense(32, activation="relu"), fb.Dense(3)], loss="cross_entropy")
"""

from ._threads import get_num_threads, set_num_threads
from .kernels.activations import ACTIVATIONS
from .kernels.losses import LOSSES
from .layers import Dense
from .model import History, Sequential
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "SGD",
    "Adam",
    "AdamW",
    "Dense",
    "History",
    "Optimizer",
    "RMSprop",
    "Sequential",
    "get_num_threads",
    "set_num_threads",
]
