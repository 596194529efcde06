"""Put convolution weights with BatchNorm folded in (as the ONNX and TF.js releases store them) into a model.

Both published export formats lose the PyTorch module names of most convolutions and fold each BatchNorm into
the convolution before it. What they keep is the order in which the convolutions run. This module finds that
order in our network (by running a tiny forward pass with hooks) and writes folded weights back exactly: the
convolution takes the folded kernel, and its BatchNorm becomes the identity plus the folded bias.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..model import MattingNetwork


@dataclass(frozen=True)
class ConvSlot:
    """One convolution in forward order: its state-dict prefix, the BatchNorm after it (if any) and shapes."""

    conv: str  # e.g. 'backbone.features.0.0'
    batchnorm: Optional[str]  # e.g. 'backbone.features.0.1', None when the convolution feeds no BatchNorm
    batchnorm_eps: float  # that BatchNorm's epsilon (torchvision's MobileNetV3 uses 1e-3, the rest 1e-5)
    weight_shape: torch.Size  # [out, in / groups, kh, kw]
    has_bias: bool
    groups: int


@torch.no_grad()
def convolutions_in_forward_order(model: MattingNetwork) -> List[ConvSlot]:
    """The model's convolutions in the order a matting forward pass first runs them.

    The pass runs one frame at ratio 0.5 so the refiner runs too; the segmentation head (``project_seg``) is not
    part of it. A convolution called several times (the refiner's box filter) is listed once. A BatchNorm is
    paired with the convolution whose output tensor it receives.
    """
    names = {module: name for name, module in model.named_modules()}
    order: List[nn.Conv2d] = []
    batchnorm_of: Dict[nn.Conv2d, nn.BatchNorm2d] = {}
    outputs: Dict[int, Tuple[nn.Conv2d, Tensor]] = {}  # the tensors stay referenced so their ids stay unique

    def on_conv(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if module not in order:
            order.append(module)
        outputs[id(output)] = (module, output)

    def on_batchnorm(module: nn.Module, inputs: tuple) -> None:
        producer = outputs.get(id(inputs[0]))
        if producer is not None:
            batchnorm_of[producer[0]] = module

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_pre_hook(on_batchnorm))
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, 3, 64, 64), downsample_ratio=0.5)  # [B, C, H, W]
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    slots = []
    for conv in order:
        bn = batchnorm_of.get(conv)
        slots.append(
            ConvSlot(
                conv=names[conv],
                batchnorm=None if bn is None else names[bn],
                batchnorm_eps=0.0 if bn is None else bn.eps,
                weight_shape=conv.weight.shape,
                has_bias=conv.bias is not None,
                groups=conv.groups,
            )
        )
    return slots


def write_folded(state: Dict[str, Tensor], slot: ConvSlot, weight: Tensor, bias: Optional[Tensor]) -> List[str]:
    """Store one folded convolution in ``state`` and return the keys written.

    ``weight`` is the folded kernel ``[out, in / groups, kh, kw]``. Where the slot has a BatchNorm, that
    BatchNorm becomes ``x + bias`` (weight 1, bias = folded bias, mean 0, var 1 − eps, so ``sqrt(var + eps) = 1``);
    otherwise ``bias`` goes to the convolution's own bias.
    """
    if tuple(weight.shape) != tuple(slot.weight_shape):
        raise ValueError(
            f"Convolution {slot.conv} expects a kernel of shape {list(slot.weight_shape)} but the source gives "
            f"{list(weight.shape)}; the file does not hold this architecture (check --variant / --refiner)."
        )
    written = [f"{slot.conv}.weight"]
    state[f"{slot.conv}.weight"] = weight.float().contiguous()
    channels = slot.weight_shape[0]
    if slot.batchnorm is not None:
        bn = slot.batchnorm
        folded_bias = torch.zeros(channels) if bias is None else bias.float()
        state[f"{bn}.weight"] = torch.ones(channels)
        state[f"{bn}.bias"] = folded_bias.clone()
        state[f"{bn}.running_mean"] = torch.zeros(channels)
        state[f"{bn}.running_var"] = torch.full((channels,), 1.0 - slot.batchnorm_eps)
        written += [f"{bn}.weight", f"{bn}.bias", f"{bn}.running_mean", f"{bn}.running_var"]
    elif slot.has_bias:
        if bias is None:
            raise ValueError(f"Convolution {slot.conv} needs a bias but the source gives none.")
        state[f"{slot.conv}.bias"] = bias.float().clone()
        written.append(f"{slot.conv}.bias")
    return written

