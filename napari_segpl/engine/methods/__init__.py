"""Training methods; importing this package registers every built-in one, in the order front
ends list them: the paper's methods and supervised training first, then the baselines."""

# isort: off
from . import segpl, segpl_vi, supervised  # noqa: F401  (registration side effect)
from . import mean_teacher, fixmatch, cct, cps, selfloop, ensemble  # noqa: F401

# isort: on
from .base import METHODS, Batch, Method, Param, StepOutput, get_method, register

__all__ = ["METHODS", "Batch", "Method", "Param", "StepOutput", "get_method", "register"]
