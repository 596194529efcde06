"""Load torchvision ImageNet weights into an encoder, failing clearly when they cannot be had."""
import os
import urllib.error

import torch
from torch import nn
from torchvision.models import WeightsEnum


def load_torchvision_weights(encoder: nn.Module, weights: WeightsEnum, progress: bool = True) -> None:
    """Copy ``weights`` into ``encoder``; the classifier entries the encoder lacks are ignored.

    The file comes from the torch.hub cache, downloaded on first use. Offline and without a cached copy this
    raises ``RuntimeError`` naming the URL and the cache path, instead of silently training from scratch.
    """
    url = weights.url
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    try:
        state = weights.get_state_dict(progress=progress, check_hash=False)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise RuntimeError(
            f"Could not get the ImageNet backbone weights from {url} ({error}). Download that file by hand and "
            f"put it at {cached}, or pass pretrained_backbone=False to start from random weights."
        ) from error
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise RuntimeError(f"The ImageNet weights at {cached} lack {len(missing)} encoder keys, e.g. {missing[:3]}.")
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)
