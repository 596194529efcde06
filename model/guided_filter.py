"""What both guided-filter refiners share: the 4-channel guide and the full-resolution affine step."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def with_luma(rgb: Tensor) -> Tensor:
    """``[N, 3, H, W]`` → ``[N, 4, H, W]``: the guide image, RGB plus its channel mean."""
    return torch.cat([rgb, rgb.mean(1, keepdim=True)], dim=1)


def apply_coefficients(A: Tensor, b: Tensor, fine_src: Tensor) -> Tuple[Tensor, Tensor]:
    """Upsample low-res A, b ``[N, 4, h, w]`` to ``fine_src`` ``[N, 3, H, W]`` and return A·guide + b,
    split into the fgr residual ``[N, 3, H, W]`` and pha ``[N, 1, H, W]``."""
    size = (fine_src.size(2), fine_src.size(3))
    A = F.interpolate(A, size, mode="bilinear", align_corners=False)
    b = F.interpolate(b, size, mode="bilinear", align_corners=False)
    out = A * with_luma(fine_src) + b
    fgr, pha = out.split([3, 1], dim=1)
    return fgr, pha
