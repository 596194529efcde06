"""The output images of a conversion: their kinds and their definition from fgr and pha (PyTorch, any device).

A background is None (transparent: RGBA) or uint8 ``[N|1, H|1, W|1, 3]`` (a colour is ``[1, 1, 1, 3]``). The fast
path's C kernel renders the same images from the refiner's coefficients (:func:`model.fast.compose.render_uint8`).
"""
from typing import Optional

import torch
from torch import Tensor

OUTPUT_KINDS = ("foreground", "alpha", "composition")


def to_uint8(x: Tensor) -> Tensor:
    """``[N, C, H, W]`` in [0, 1] → uint8 ``[N, H, W, C]`` on the same device, rounded: x·255 + 0.5 truncated (in
    float32, since bfloat16 cannot hold x·255 + 0.5; inputs are clamped model outputs, so no clamp is needed)."""
    return x.float().mul(255).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1)


def output_image(kind: str, fgr: Tensor, pha: Tensor, background: Optional[Tensor]) -> Tensor:
    """One output as uint8 ``[N, H, W, C]`` from fgr ``[N, 3, H, W]``, pha ``[N, 1, H, W]`` (any float dtype):
    'foreground' (C = 3), 'alpha' (C = 1), 'composition' over ``background`` (C = 3: fgr·pha + bgr·(1 − pha)) or,
    with no background, transparent RGBA (C = 4: colour kept only where alpha > 0, as published for PNG)."""
    if kind == "foreground":
        return to_uint8(fgr)
    if kind == "alpha":
        return to_uint8(pha)
    if kind != "composition":
        raise ValueError(f"Unknown output kind {kind!r}; use one of {', '.join(OUTPUT_KINDS)}.")
    if background is None:
        return to_uint8(torch.cat([fgr * pha.gt(0), pha], dim=1))  # [N, 4, H, W]
    bgr = background.to(fgr.device).permute(0, 3, 1, 2).to(fgr.dtype).div(255)  # [N|1, 3, H|1, W|1]
    return to_uint8(torch.lerp(bgr.expand_as(fgr), fgr, pha))
