"""The documented import of the fast path, ``from model.fast_path import optimize_for_inference``; the
implementation lives in :mod:`model.fast`."""
from .fast import FastMattingNetwork, fold_batchnorm, optimize_for_inference

__all__ = ["FastMattingNetwork", "fold_batchnorm", "optimize_for_inference"]
