"""The fast inference path (CONTRACT, filled in by the speed issue).

``optimize_for_inference(model, ...)`` returns an object called exactly like ``MattingNetwork`` (same
forward arguments, same outputs) that computes the same function faster. Until the speed issue lands it
returns the model itself in eval mode.
"""
from torch import nn


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """An optimised copy of ``model`` for inference (currently: the model in eval mode)."""
    return model.eval()
