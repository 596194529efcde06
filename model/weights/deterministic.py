"""The deterministic weights recipe of ``../shared/reference/README.md``.

With these weights our network must reproduce the published implementation's golden outputs; tests and
benchmarks also use them when no trained weights are at hand.
"""
import math
import zlib
from typing import Dict

import torch
from torch import Tensor, nn


def deterministic_tensor(key: str, reference: Tensor) -> Tensor:
    """The recipe's value for state_dict entry ``key`` shaped like ``reference``."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    shape = reference.shape
    if key.endswith("num_batches_tracked"):
        return torch.zeros_like(reference)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    if key.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if reference.dim() >= 2:
        gain = 0.1 if key.startswith("refiner.conv.6") else 1.0
        return gain * torch.randn(shape, generator=g) / math.sqrt(reference[0].numel())
    if key.endswith(".bias") and (key.startswith("project_") or key.startswith("refiner.conv.6")):
        return torch.full(shape, 0.5)
    if key.endswith(".weight"):
        return 1 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


def deterministic_state_dict(model: nn.Module) -> Dict[str, Tensor]:
    """A full state dict for ``model`` following the recipe, key by key."""
    return {k: deterministic_tensor(k, v) for k, v in model.state_dict().items()}


def load_deterministic_weights(model: nn.Module) -> nn.Module:
    """Fill ``model`` with the recipe's weights in place and return it."""
    model.load_state_dict(deterministic_state_dict(model), strict=True)
    return model
