"""What both guided-filter refiners share: the ``Refiner`` protocol, their base class, the 4-channel guide and the
faithful full-resolution step (documentation/architecture.md, "Refiners")."""
from typing import Optional, Protocol, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Refiner(Protocol):
    """A refiner turns the low-resolution prediction into affine coefficients A, b (``[N, 4, h, w]`` each) such that
    ``A·guide + b`` gives the prediction at full resolution (A None means A = 0: plain upsampling of b)."""

    def coefficients(
        self, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
    ) -> Tuple[Optional[Tensor], Tensor]:
        """base_src ``[N, 3, h, w]``, base_fgr (the fgr residual) ``[N, 3, h, w]``, base_pha ``[N, 1, h, w]``,
        base_hid ``[N, hid, h, w]`` → A, b ``[N, 4, h, w]``."""
        ...


class GuidedFilterRefiner(nn.Module):
    """The base of both guided-filter refiners: the published ``forward``, their ``coefficients`` applied at full
    size (the network's pipeline calls ``coefficients`` and its own ``compose`` stage instead)."""

    def coefficients(
        self, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """See :class:`Refiner`."""
        raise NotImplementedError

    def forward(
        self, fine_src: Tensor, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """The fgr residual and pha at ``fine_src``'s size ``[N, 3|1, H, W]``."""
        A, b = self.coefficients(base_src, base_fgr, base_pha, base_hid)
        return apply_coefficients(A, b, fine_src)


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


def compose(A: Optional[Tensor], b: Tensor, src: Tensor) -> Tuple[Tensor, Tensor]:
    """The faithful full-resolution step: coefficients A, b ``[N, 4, h, w]`` and the source ``[N, 3, H, W]`` →
    fgr = clamp(residual + src, 0, 1) ``[N, 3, H, W]``, pha = clamp(pha, 0, 1) ``[N, 1, H, W]``.

    With A None the prediction is b itself: taken as it is when already at full size (no refiner), else
    upsampled bilinearly.
    """
    if A is not None:
        fgr_residual, pha = apply_coefficients(A, b, src)
    else:
        if b.size(2) != src.size(2) or b.size(3) != src.size(3):
            b = F.interpolate(b, (src.size(2), src.size(3)), mode="bilinear", align_corners=False)
        fgr_residual, pha = b.split([3, 1], dim=1)  # [N, 3, H, W], [N, 1, H, W]
    return (fgr_residual + src).clamp(0.0, 1.0), pha.clamp(0.0, 1.0)
