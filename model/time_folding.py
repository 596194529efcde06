"""Fold time into the batch axis and back.

Every per-frame module of the network sees ``[B·T, C, H, W]``; only the ConvGRU needs the time axis.
These two helpers are the single place where the two layouts meet. Both are TorchScript-compatible.
"""
from typing import List

from torch import Tensor


def fold_time(x: Tensor) -> Tensor:
    """``[B, T, C, H, W]`` → ``[B·T, C, H, W]`` (a view where possible)."""
    return x.flatten(0, 1)


def unfold_time(x: Tensor, batch_size: int) -> Tensor:
    """``[B·T, C, H, W]`` → ``[B, T, C, H, W]`` for a known batch size ``B``."""
    shape: List[int] = [batch_size, -1] + list(x.shape[1:])
    return x.reshape(shape)
