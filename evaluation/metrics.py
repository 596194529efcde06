"""The paper's per-frame matting metrics, one definition shared by both evaluators.

Definitions and the details that match the published values: documentation/evaluation.md, "Metric definitions".

Frames are float tensors in [0, 1] read from 8-bit files (value / 255): alpha ``[H, W]``, foreground
``[H, W, 3]``. Everything runs in float64 on the frames' device (CPU or CUDA) so that the scores do not
depend on the device; Conn, which needs connected components, runs on the CPU with OpenCV.
Scales follow the paper's tables: MAD and MSE ×1e3, Grad and Conn /1e3, dtSSD ×1e2.
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_PHI_CUTOFF = 0.15
CONN_TIE_TOLERANCE = 1e-6  # far below the 1/255 spacing of 8-bit alphas

PHA_METRICS = ("pha_mad", "pha_mse", "pha_grad", "pha_conn", "pha_dtssd")
FGR_METRICS = ("fgr_mad", "fgr_mse")
ALL_METRICS = PHA_METRICS + FGR_METRICS


def pha_mad(pred: Tensor, true: Tensor) -> float:
    """Mean absolute alpha difference ×1e3."""
    return (pred - true).abs().mean().item() * 1e3


def pha_mse(pred: Tensor, true: Tensor) -> float:
    """Mean squared alpha difference ×1e3."""
    return (pred - true).square().mean().item() * 1e3


def _gaussian(x: Tensor, sigma: float) -> Tensor:
    return torch.exp(-x.square() / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))


def gradient_kernels(sigma: float = GRAD_SIGMA, epsilon: float = 1e-2) -> Tuple[Tensor, Tensor]:
    """The two 1-D factors of the unit-norm derivative-of-Gaussian filter: (smoothing, derivative), each ``[K]``.

    The 2-D filter is their outer product (normalised to unit L2 norm, so each factor is normalised alone);
    the half width is the smallest at which the Gaussian falls below ``epsilon`` of a unit-height one.
    """
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    x = torch.arange(-half, half + 1, dtype=torch.float64)  # [K]
    smooth = _gaussian(x, sigma)
    derivative = -x * smooth / sigma**2
    return smooth / smooth.norm(), derivative / derivative.norm()


def _minmax_normalise(x: Tensor) -> Tensor:
    """Scale a frame to [0, 1]; a constant frame becomes all zeros (as OpenCV's NORM_MINMAX does)."""
    low, high = x.min(), x.max()
    if high - low <= torch.finfo(x.dtype).eps:
        return torch.zeros_like(x)
    return (x - low) / (high - low)


def _correlate(x: Tensor, kernel: Tensor, dim: int) -> Tensor:
    """Correlate ``x`` (already padded by ``K // 2`` along ``dim``) with the 1-D ``kernel`` ``[K]`` along ``dim``."""
    size = x.size(dim) - kernel.numel() + 1
    return sum(w * x.narrow(dim, k, size) for k, w in enumerate(kernel.tolist()))


def gradient_magnitude(x: Tensor, sigma: float = GRAD_SIGMA) -> Tensor:
    """Derivative-of-Gaussian gradient magnitude of ``x`` ``[H, W]``, borders replicated (aaa|abc…).

    The filter is separable, so it runs as two 1-D passes of shifted sums (fast in float64 on any device).
    """
    smooth, derivative = gradient_kernels(sigma)
    half = smooth.numel() // 2
    padded = F.pad(x[None, None], (half, half, half, half), mode="replicate")[0, 0]  # [H+2h, W+2h]
    grad_x = _correlate(_correlate(padded, smooth, 0), derivative, 1)  # [H, W]: d/dx of the vertical blur
    grad_y = _correlate(_correlate(padded, derivative, 0), smooth, 1)  # [H, W]
    return torch.sqrt(grad_x.square() + grad_y.square())


def pha_grad(pred: Tensor, true: Tensor) -> float:
    """Sum of squared differences of gradient magnitudes of the min-max normalised alphas, /1e3."""
    diff = gradient_magnitude(_minmax_normalise(pred)) - gradient_magnitude(_minmax_normalise(true))
    return diff.square().sum().item() / 1e3


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean ``[H, W]`` mask (all False when the mask is empty)."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel(), minlength=count)[1:]
    return labels == 1 + int(np.argmax(sizes))


def pha_conn(pred: Tensor, true: Tensor, step: float = CONN_STEP) -> float:
    """Connectivity error /1e3: each pixel's alpha above the last threshold at which it was still in the
    largest connected component of (pred ≥ t) ∧ (true ≥ t), penalised where that excess reaches 0.15."""
    pred_np = pred.detach().cpu().numpy().astype(np.float64)
    true_np = true.detach().cpu().numpy().astype(np.float64)
    thresholds = [round(i * step, 9) for i in range(round(1 / step) + 1)]  # 0, 0.1, …, 1.0
    level = np.full(pred_np.shape, -1.0)
    for previous, threshold in zip(thresholds[:-1], thresholds[1:]):
        # 8-bit alphas can equal a threshold (51/255 = 0.2); the tolerance makes such ties count as reached
        # whatever the float rounding, as the published float32 scores do.
        reached = threshold - CONN_TIE_TOLERANCE
        connected = _largest_component((pred_np >= reached) & (true_np >= reached))
        level[(level == -1) & ~connected] = previous
    level[level == -1] = 1.0

    def phi(alpha: np.ndarray) -> np.ndarray:
        excess = alpha - level
        return 1 - excess * (excess >= CONN_PHI_CUTOFF)

    return float(np.abs(phi(pred_np) - phi(true_np)).sum()) / 1e3


def pha_dtssd(pred: Tensor, true: Tensor, pred_prev: Optional[Tensor], true_prev: Optional[Tensor]) -> float:
    """Temporal coherence ×1e2: RMS of the difference between predicted and true frame-to-frame change;
    0 for a clip's first frame (``pred_prev is None``)."""
    if pred_prev is None or true_prev is None:
        return 0.0
    change = (pred - pred_prev) - (true - true_prev)
    return change.square().mean().sqrt().item() * 1e2


def _foreground_pixels(pred_fgr: Tensor, true_fgr: Tensor, true_pha: Tensor) -> Tuple[Tensor, Tensor]:
    mask = true_pha > 0  # [H, W]
    return pred_fgr[mask], true_fgr[mask]  # [N, 3] each


def fgr_mad(pred_fgr: Tensor, true_fgr: Tensor, true_pha: Tensor) -> float:
    """Mean absolute foreground difference ×1e3 over pixels with true alpha > 0 (NaN when there are none)."""
    pred, true = _foreground_pixels(pred_fgr, true_fgr, true_pha)
    return (pred - true).abs().mean().item() * 1e3 if pred.numel() else math.nan


def fgr_mse(pred_fgr: Tensor, true_fgr: Tensor, true_pha: Tensor) -> float:
    """Mean squared foreground difference ×1e3 over pixels with true alpha > 0 (NaN when there are none)."""
    pred, true = _foreground_pixels(pred_fgr, true_fgr, true_pha)
    return (pred - true).square().mean().item() * 1e3 if pred.numel() else math.nan


@dataclass
class Frame:
    """One frame of a clip, prediction and truth: alphas ``[H, W]``, foregrounds ``[H, W, 3]`` or None."""

    pred_pha: Tensor
    true_pha: Tensor
    pred_fgr: Optional[Tensor] = None
    true_fgr: Optional[Tensor] = None


_PER_FRAME: Dict[str, Callable[[Frame, Optional[Frame]], float]] = {
    "pha_mad": lambda f, _: pha_mad(f.pred_pha, f.true_pha),
    "pha_mse": lambda f, _: pha_mse(f.pred_pha, f.true_pha),
    "pha_grad": lambda f, _: pha_grad(f.pred_pha, f.true_pha),
    "pha_conn": lambda f, _: pha_conn(f.pred_pha, f.true_pha),
    "pha_dtssd": lambda f, p: pha_dtssd(
        f.pred_pha, f.true_pha, p.pred_pha if p else None, p.true_pha if p else None
    ),
    "fgr_mad": lambda f, _: fgr_mad(f.pred_fgr, f.true_fgr, f.true_pha),
    "fgr_mse": lambda f, _: fgr_mse(f.pred_fgr, f.true_fgr, f.true_pha),
}


def check_metric_names(metrics: Tuple[str, ...], allowed: Tuple[str, ...] = ALL_METRICS) -> None:
    """Raise ValueError for an unknown or unsupported metric name."""
    unknown = [m for m in metrics if m not in allowed]
    if unknown or not metrics:
        raise ValueError(f"Unsupported metrics {unknown or '(none)'}; choose from {', '.join(allowed)}.")


def score_frame(frame: Frame, previous: Optional[Frame], metrics: Tuple[str, ...]) -> Dict[str, float]:
    """The requested metrics of ``frame`` (``previous`` is the clip's preceding frame, for dtSSD)."""
    check_metric_names(metrics)
    return {name: _PER_FRAME[name](frame, previous) for name in metrics}
