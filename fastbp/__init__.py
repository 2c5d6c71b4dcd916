"""fastbp: train dense neural networks by backpropagation, fast, on a multicore CPU.

>>> import fastbp as fb
>>> model = fb.Sequential([fb.Dense(32, activation="relu"), fb.Dense(3)], loss="cross_entropy")
"""

from ._threads import get_num_threads, set_num_threads
from ._warmup import warmup
from .callbacks import Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau
from .diagnostics import BackpropTrace, backprop_trace, check_gradients
from .errors import BenchError, CLIError, ModelFileError, TrainingDivergedError
from .io import load
from .kernels.activations import ACTIVATIONS
from .kernels.losses import LOSSES
from .layers import Dense, Dropout, Normalization
from .metrics import METRICS
from .model import History, LBFGSResult, Sequential
from .onnx_export import export_onnx
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop
from .schedules import CosineDecay, ExponentialDecay, Schedule, StepDecay
from .state import Inputs, TrainingState

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "METRICS",
    "BackpropTrace",
    "backprop_trace",
    "check_gradients",
    "Callback",
    "CosineDecay",
    "Dropout",
    "Normalization",
    "Inputs",
    "TrainingState",
    "EarlyStopping",
    "ExponentialDecay",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "Schedule",
    "StepDecay",
    "TrainingDivergedError",
    "SGD",
    "Adam",
    "AdamW",
    "Dense",
    "History",
    "LBFGSResult",
    "ModelFileError",
    "BenchError",
    "CLIError",
    "Optimizer",
    "RMSprop",
    "Sequential",
    "export_onnx",
    "get_num_threads",
    "load",
    "set_num_threads",
    "warmup",
]
