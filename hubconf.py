"""torch.hub entry points: ``torch.hub.load('PeterL1n/RobustVideoMatting', 'mobilenetv3')`` and friends.

``mobilenetv3`` / ``resnet50`` return a ``MattingNetwork``; with ``pretrained=True`` it holds the published
weights (from ``checkpoint`` when given, else the official release file in the torch.hub cache, downloaded on
first use) and is in eval mode. ``converter`` returns ``inference.convert_video``.
"""
from typing import Callable, Optional

from model import MattingNetwork
from model.weights import load_model

dependencies = ["torch", "torchvision"]


def _network(variant: str, pretrained: bool, progress: bool, refiner: str, checkpoint: Optional[str]) -> MattingNetwork:
    if not pretrained:
        if checkpoint is not None:
            raise ValueError("checkpoint= was given with pretrained=False; pass pretrained=True to load it.")
        return MattingNetwork(variant, refiner)
    return load_model(variant, refiner, checkpoint=checkpoint, progress=progress)


def mobilenetv3(
    pretrained: bool = True,
    progress: bool = True,
    refiner: str = "deep_guided_filter",
    checkpoint: Optional[str] = None,
) -> MattingNetwork:
    """RVM with the MobileNetV3-Large encoder (3.7 M parameters); ``checkpoint`` = a local weights file."""
    return _network("mobilenetv3", pretrained, progress, refiner, checkpoint)


def resnet50(
    pretrained: bool = True,
    progress: bool = True,
    refiner: str = "deep_guided_filter",
    checkpoint: Optional[str] = None,
) -> MattingNetwork:
    """RVM with the ResNet-50 encoder (26.9 M parameters); ``checkpoint`` = a local weights file."""
    return _network("resnet50", pretrained, progress, refiner, checkpoint)


def converter() -> Callable:
    """The video converter, ``inference.convert_video(model, input_source, ...)``."""
    from inference import convert_video  # imported here so loading a model does not need the video stack

    return convert_video
