"""Where the project's weights come from: one resolver used by inference, hub and the speed test.

CONTRACT (filled in by the weights issue): ``resolve_weights`` returns a local path to a ``.pth`` state dict
for ``variant`` (an explicit path, or the published file in the torch.hub cache, downloaded on first use when
online), or raises ``FileNotFoundError`` saying where to put the file. ``load_model`` builds a
``MattingNetwork`` in eval mode with those weights loaded strictly, raising clear errors for bad files.
"""
import os
from typing import Optional

import torch

from .model import MattingNetwork


def resolve_weights(variant: str = "mobilenetv3", checkpoint: Optional[str] = None, progress: bool = True) -> str:
    """A local path to the weights for ``variant``."""
    if checkpoint is None:
        raise FileNotFoundError("No checkpoint given; pass the path of a .pth file.")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"Checkpoint {checkpoint} does not exist.")
    return checkpoint


def load_model(
    variant: str = "mobilenetv3",
    refiner: str = "deep_guided_filter",
    checkpoint: Optional[str] = None,
    device: str = "cpu",
    progress: bool = True,
) -> MattingNetwork:
    """A ``MattingNetwork`` with weights loaded (strict), in eval mode, on ``device``."""
    model = MattingNetwork(variant, refiner)
    state = torch.load(resolve_weights(variant, checkpoint, progress), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
