"""Fast Guided Filter refiner: the classic guided filter (radius 1, eps 1e-5), no learned weights."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .guided_filter import GuidedFilterRefiner, with_luma


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Separable mean over a (2r+1)² window with zero padding; borders still divide by the full width."""
    channels = x.size(1)
    width = 2 * radius + 1
    kernel = torch.full((channels, 1, 1, width), 1.0 / width, dtype=x.dtype, device=x.device)
    x = F.conv2d(x, kernel, padding=(0, radius), groups=channels)
    return F.conv2d(x, kernel.transpose(2, 3).contiguous(), padding=(radius, 0), groups=channels)


class FastGuidedFilterRefiner(GuidedFilterRefiner):
    """A :class:`~model.guided_filter.Refiner` with the classic closed form A = cov / (var + eps); same inputs and
    outputs as :class:`~model.deep_guided_filter.DeepGuidedFilterRefiner`, ``base_hid`` unused."""

    def __init__(self, radius: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.radius = radius
        self.eps = eps

    def coefficients(self, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor) -> Tuple[Tensor, Tensor]:
        """The low-res affine coefficients A, b (each ``[N, 4, h, w]``, in the inputs' dtype) with out = A·guide + b.

        The statistics are computed in float32 whatever the inputs' dtype: var = E[x²] − E[x]² cancels
        catastrophically in float16/bfloat16 (an error of ~1e-3 against eps = 1e-5 turns A = cov / (var + eps) into
        noise of size 100 in flat regions)."""
        dtype = base_src.dtype
        base_x = with_luma(base_src.float())  # [N, 4, h, w] float32
        base_y = torch.cat([base_fgr, base_pha], dim=1).float()  # [N, 4, h, w] float32
        mean_x = box_mean(base_x, self.radius)
        mean_y = box_mean(base_y, self.radius)
        cov_xy = box_mean(base_x * base_y, self.radius) - mean_x * mean_y
        var_x = box_mean(base_x * base_x, self.radius) - mean_x * mean_x
        A = cov_xy / (var_x + self.eps)
        b = mean_y - A * mean_x
        return A.to(dtype), b.to(dtype)
