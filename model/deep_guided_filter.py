"""Deep Guided Filter refiner: a learned guided filter that brings low-res fgr/pha up to full size."""
from typing import Tuple

import torch
from torch import Tensor, nn

from .guided_filter import GuidedFilterRefiner, with_luma


class DeepGuidedFilterRefiner(GuidedFilterRefiner):
    """A :class:`~model.guided_filter.Refiner` whose A comes from a small learned network on the local statistics and
    the decoder's hidden features (documentation/architecture.md, "Refiners").

    Inputs (frames folded): base_src ``[N, 3, h, w]``, base_fgr ``[N, 3, h, w]``, base_pha ``[N, 1, h, w]``,
    base_hid ``[N, hid, h, w]``; outputs A, b ``[N, 4, h, w]``.
    """

    def __init__(self, hid_channels: int = 16) -> None:
        super().__init__()
        self.box_filter = nn.Conv2d(4, 4, kernel_size=3, padding=1, bias=False, groups=4)
        self.box_filter.weight.data.fill_(1 / 9)
        self.conv = nn.Sequential(
            nn.Conv2d(4 * 2 + hid_channels, hid_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(hid_channels),
            nn.ReLU(True),
            nn.Conv2d(hid_channels, hid_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(hid_channels),
            nn.ReLU(True),
            nn.Conv2d(hid_channels, 4, kernel_size=1, bias=True),
        )

    def coefficients(self, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor) -> Tuple[Tensor, Tensor]:
        """The low-res affine coefficients A, b (each ``[N, 4, h, w]``) with out = A·guide + b."""
        base_x = with_luma(base_src)
        base_y = torch.cat([base_fgr, base_pha], dim=1)
        mean_x = self.box_filter(base_x)
        mean_y = self.box_filter(base_y)
        cov_xy = self.box_filter(base_x * base_y) - mean_x * mean_y
        var_x = self.box_filter(base_x * base_x) - mean_x * mean_x
        A = self.conv(torch.cat([cov_xy, var_x, base_hid], dim=1))
        b = mean_y - A * mean_x
        return A, b
