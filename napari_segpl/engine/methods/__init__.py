"""Training methods; importing this package registers every built-in one."""

from . import cct, cps, ensemble, fixmatch, mean_teacher, segpl, segpl_vi, selfloop, supervised  # noqa: F401  (registration side effect)
from .base import METHODS, Batch, Method, Param, StepOutput, get_method, register

__all__ = ["METHODS", "Batch", "Method", "Param", "StepOutput", "get_method", "register"]
