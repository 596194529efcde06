"""Training losses: the matting loss on alpha and foreground, and the segmentation loss.

Definitions: documentation/training.md, "Losses".

All inputs are clips ``[B, T, C, H, W]`` in [0, 1] (``pred_seg`` is a logit). The values equal the published
implementation's; ``../shared/reference/golden/golden_losses_metrics.pt`` pins them.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor

from model.time_folding import fold_time

COHERENCE_WEIGHT = 5.0
PYRAMID_LEVELS = 5


def matting_loss(pred_fgr: Tensor, pred_pha: Tensor, true_fgr: Tensor, true_pha: Tensor) -> Dict[str, Tensor]:
    """The matting losses of the paper, each a scalar tensor, plus their sum under ``'total'``.

    ``pha_l1``, ``pha_laplacian``, ``pha_coherence`` on alpha; ``fgr_l1`` and ``fgr_coherence`` on the foreground,
    counted only where the true alpha is above zero (the foreground is undefined elsewhere).
    """
    loss = {
        "pha_l1": F.l1_loss(pred_pha, true_pha),
        "pha_laplacian": laplacian_loss(fold_time(pred_pha), fold_time(true_pha)),  # [B·T, 1, H, W]
        "pha_coherence": coherence_loss(pred_pha, true_pha),
    }
    visible = true_pha.gt(0)  # [B, T, 1, H, W]
    pred_fgr = pred_fgr * visible
    true_fgr = true_fgr * visible
    loss["fgr_l1"] = F.l1_loss(pred_fgr, true_fgr)
    loss["fgr_coherence"] = coherence_loss(pred_fgr, true_fgr)
    loss["total"] = sum(loss.values())
    return loss


def segmentation_loss(pred_seg: Tensor, true_seg: Tensor) -> Tensor:
    """Binary cross-entropy between the segmentation logit and the 0/1 person mask."""
    return F.binary_cross_entropy_with_logits(pred_seg, true_seg)


def coherence_loss(pred: Tensor, true: Tensor) -> Tensor:
    """Weighted MSE between frame-to-frame changes of ``pred`` and ``true`` (``[B, T, C, H, W]``, T ≥ 2)."""
    pred_change = pred[:, 1:] - pred[:, :-1]  # [B, T-1, C, H, W]
    true_change = true[:, 1:] - true[:, :-1]
    return F.mse_loss(pred_change, true_change) * COHERENCE_WEIGHT


def laplacian_loss(pred: Tensor, true: Tensor, levels: int = PYRAMID_LEVELS) -> Tensor:
    """L1 between Laplacian pyramids of ``pred`` and ``true`` (``[N, C, H, W]``); level i weighs 2^i, mean over levels."""
    min_size = 4 * 2 ** (levels - 1)  # reflect padding by 2 needs ≥ 3 (so, even, 4) pixels at the coarsest level
    if min(pred.shape[-2:]) < min_size:
        raise ValueError(
            f"The Laplacian loss over {levels} levels needs frames of at least {min_size}×{min_size} pixels; got "
            f"{list(pred.shape[-2:])}. Train at a larger resolution (the random crop halves it at worst)."
        )
    kernel = binomial_kernel(device=pred.device, dtype=pred.dtype)
    pred_levels = laplacian_pyramid(pred, kernel, levels)
    true_levels = laplacian_pyramid(true, kernel, levels)
    total = pred.new_zeros(())
    for level, (p, t) in enumerate(zip(pred_levels, true_levels)):
        total = total + (2**level) * F.l1_loss(p, t)
    return total / levels


def binomial_kernel(device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> Tensor:
    """The 5×5 binomial smoothing kernel [1 4 6 4 1]ᵀ[1 4 6 4 1] / 256 as a conv weight ``[1, 1, 5, 5]``."""
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    return (taps[:, None] * taps[None, :] / 256).reshape(1, 1, 5, 5)


def laplacian_pyramid(image: Tensor, kernel: Tensor, levels: int) -> List[Tensor]:
    """Band-pass levels of ``image`` ``[N, C, H, W]``, finest first; odd sizes are cropped to even at each level."""
    bands = []
    current = image
    for _ in range(levels):
        height, width = current.shape[-2:]
        current = current[..., : height - height % 2, : width - width % 2]  # [N, C, even H, even W]
        coarser = _smooth(current, kernel)[..., ::2, ::2]  # [N, C, H/2, W/2]
        bands.append(current - _expand(coarser, kernel))
        current = coarser
    return bands


def _smooth(image: Tensor, kernel: Tensor) -> Tensor:
    """Each channel of ``image`` ``[N, C, H, W]`` convolved with ``kernel`` under reflect padding; same shape."""
    n, c, h, w = image.shape
    planes = image.reshape(n * c, 1, h, w)  # [N·C, 1, H, W]
    planes = F.conv2d(F.pad(planes, (2, 2, 2, 2), mode="reflect"), kernel)
    return planes.reshape(n, c, h, w)  # [N, C, H, W]


def _expand(image: Tensor, kernel: Tensor) -> Tensor:
    """Upsample ×2 by zero insertion (×4 to keep the mean) and smoothing: ``[N, C, h, w]`` → ``[N, C, 2h, 2w]``."""
    n, c, h, w = image.shape
    spread = image.new_zeros((n, c, 2 * h, 2 * w))
    spread[..., ::2, ::2] = image * 4
    return _smooth(spread, kernel)
