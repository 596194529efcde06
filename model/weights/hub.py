"""Where the project's weights come from: one resolver used by inference, hub and the speed test.

``resolve_weights`` returns a local path: the one given, or the published ``rvm_<variant>.pth`` in the torch.hub
cache (downloaded on first use when online). Offline and without a cached file it raises
``FileNotFoundError`` saying where to put the file. ``load_model`` builds a ``MattingNetwork`` in eval mode
with the weights loaded strictly; any published format works (``.pth``, TorchScript, ONNX).
"""
import logging
import os
import urllib.error
from pathlib import Path
from typing import Optional, Union

import torch

from ..model import REFINERS, VARIANTS, MattingNetwork
from .formats import convert_weights

logger = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/PeterL1n/RobustVideoMatting/releases/download/v1.0.0/rvm_{variant}.pth"


def published_url(variant: str = "mobilenetv3") -> str:
    """The official release URL of the ``variant`` weights."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    return RELEASE_URL.format(variant=variant)


def cached_weights_path(variant: str = "mobilenetv3") -> Path:
    """Where the published ``variant`` weights live in the torch.hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(published_url(variant))


def resolve_weights(variant: str = "mobilenetv3", checkpoint: Optional[str] = None, progress: bool = True) -> str:
    """A local path to the weights for ``variant``: ``checkpoint`` if given, else the published file (cached)."""
    url = published_url(variant)
    if checkpoint is not None:
        if not os.path.exists(checkpoint):
            raise FileNotFoundError(
                f"Checkpoint {checkpoint} does not exist; check the path, or leave --checkpoint out to use the "
                f"published {variant} weights."
            )
        return str(checkpoint)
    cached = cached_weights_path(variant)
    if cached.is_file():
        return str(cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading the published %s weights from %s to %s", variant, url, cached)
    try:
        torch.hub.download_url_to_file(url, str(cached), progress=progress)
    except (urllib.error.URLError, OSError) as error:
        raise FileNotFoundError(
            f"No {variant} weights: {cached} does not exist and downloading {url} failed ({error}). Download that "
            f"file by hand and put it at {cached}, or pass the path of a weights file (--checkpoint / checkpoint=)."
        ) from error
    return str(cached)


def load_model(
    variant: str = "mobilenetv3",
    refiner: str = "deep_guided_filter",
    checkpoint: Optional[Union[str, Path]] = None,
    device: str = "cpu",
    progress: bool = True,
) -> MattingNetwork:
    """A ``MattingNetwork(variant, refiner)`` in eval mode on ``device`` with the resolved weights loaded strictly.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and the problem (missing, corrupt, truncated,
    or weights of another variant/refiner, e.g. "these are resnet50 weights, pass --variant resnet50").
    """
    if refiner not in REFINERS:
        raise ValueError(f"Unknown refiner {refiner!r}; choose one of {', '.join(REFINERS)}.")
    path = resolve_weights(variant, None if checkpoint is None else str(checkpoint), progress)
    result = convert_weights(path, variant=variant, refiner=refiner)
    if result.not_carried:
        logger.warning("%s does not carry %s; segmentation outputs are meaningless.", path, result.not_carried)
    model = MattingNetwork(variant, refiner)
    model.load_state_dict(result.state_dict, strict=True)
    return model.eval().to(device)
