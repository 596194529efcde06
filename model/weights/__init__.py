"""Everything about weights: where the published files come from, reading and checking weight files, converting
the published formats, ImageNet backbones and the deterministic test weights (documentation/weights.md).

- ``hub``: ``resolve_weights`` / ``load_model`` (the published files in the torch.hub cache, or a given path);
- ``checkpoint``: safe reading of ``.pth`` / TorchScript files and the fit to an architecture;
- ``formats``: ``convert_weights`` — ONNX, TF.js and PyTorch sources to a strict-loadable state dict
  (``onnx_weights``, ``tfjs_weights``, through ``folded_convolutions``); the command is ``python -m model.convert``;
- ``imagenet``: torchvision's ImageNet weights for the encoders (``pretrained_backbone=True``);
- ``deterministic``: the golden-recipe weights the tests and benchmarks use.
"""
from .formats import WeightsConversion, convert_weights, detect_format, save_state_dict
from .hub import cached_weights_path, load_model, published_url, resolve_weights

__all__ = [
    "WeightsConversion",
    "cached_weights_path",
    "convert_weights",
    "detect_format",
    "load_model",
    "published_url",
    "resolve_weights",
    "save_state_dict",
]
