"""The one matting pipeline, written once and shared by the faithful network and the fast path.

``MattingPipeline.forward`` folds time, downsamples, and runs four public stages on frames folded into the batch
axis (``N = B·T``); subclasses implement the stages (documentation/architecture.md, "Stages"):

- ``encode(src_sm, states, batch_size)`` → hidden ``[N, 16, h, w]`` and the new states [r1, r2, r3, r4];
- ``segment(hid)`` → the segmentation logit ``[N, 1, h, w]`` (``segmentation_pass``);
- ``coefficients(src_sm, hid, refine)`` → low-resolution A (or None), b ``[N, 4, ·, ·]``: the refiner's affine
  coefficients when ``refine``, else A = None and b = the prediction itself, already at full size;
- ``compose(A, b, src)`` → fgr ``[N, 3, H, W]``, pha ``[N, 1, H, W]`` in [0, 1] at full resolution.

``MattingNetwork`` (model/model.py) implements them with its layers; ``FastMattingNetwork`` (model/fast/) with a
BatchNorm-folded copy of a network and compiled or fused implementations; the export wrapper
(model/export_module.py) calls a network's stages around its own tensor-ratio resize. Everything here compiles
with ``torch.jit.script``.
"""
from typing import List, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from .time_folding import fold_time, unfold_time


def downsample(src: Tensor, downsample_ratio: float) -> Tensor:
    """Bilinear resize ``[N, 3, H, W]`` → ``[N, 3, ⌊H·r⌋, ⌊W·r⌋]`` (sized from the factor); ratio 1: ``src``."""
    if downsample_ratio == 1:
        return src
    return F.interpolate(
        src, scale_factor=downsample_ratio, mode="bilinear", align_corners=False, recompute_scale_factor=False
    )


def check_inputs(src: Tensor, states: List[Optional[Tensor]], downsample_ratio: float) -> None:
    """Raise ``ValueError`` naming the problem for a malformed source, ratio or state."""
    if src.dim() != 4 and src.dim() != 5:
        raise ValueError(
            "src must be [B, 3, H, W] or [B, T, 3, H, W]; got a {}-D tensor of shape {}.".format(
                src.dim(), list(src.shape)
            )
        )
    if src.size(-3) != 3:
        raise ValueError(
            "src must have 3 (RGB) channels at dim -3; got shape {}. Convert grey or RGBA input to RGB.".format(
                list(src.shape)
            )
        )
    if not (downsample_ratio > 0.0 and downsample_ratio <= 1.0):
        raise ValueError("downsample_ratio must be in (0, 1]; got {}.".format(downsample_ratio))
    for i, state in enumerate(states):
        if state is not None:
            if state.dim() != 4:
                raise ValueError("r{} must be a 4-D state [B, C, h, w]; got shape {}.".format(i + 1, list(state.shape)))
            if state.size(0) != src.size(0):
                raise ValueError(
                    "r{} has batch size {} but src has {}; pass the states returned for this clip, or None.".format(
                        i + 1, state.size(0), src.size(0)
                    )
                )


def restore_time(x: Tensor, batch_size: int, is_clip: bool) -> Tensor:
    """``[B·T, C, H, W]`` back to the caller's layout: ``[B, T, C, H, W]`` for a clip, else ``[B, C, H, W]``."""
    return unfold_time(x, batch_size) if is_clip else x


class MattingPipeline(nn.Module):
    """The forward pass of Robust Video Matting in terms of the four stages (see the module docstring)."""

    def forward(
        self,
        src: Tensor,
        r1: Optional[Tensor] = None,
        r2: Optional[Tensor] = None,
        r3: Optional[Tensor] = None,
        r4: Optional[Tensor] = None,
        downsample_ratio: float = 1.0,
        segmentation_pass: bool = False,
    ) -> List[Tensor]:
        """Matte ``src`` (RGB in [0, 1], ``[B, 3, H, W]`` or a clip ``[B, T, 3, H, W]``).

        Returns ``[fgr, pha, r1, r2, r3, r4]`` (fgr ``[..., 3, H, W]``, pha ``[..., 1, H, W]``), or
        ``[seg, r1, r2, r3, r4]`` with seg a ``[..., 1, h, w]`` logit at the downsampled size when
        ``segmentation_pass``. States are ``[B, C, h, w]`` after the last frame; ``None`` means zeros.
        """
        check_inputs(src, [r1, r2, r3, r4], downsample_ratio)
        is_clip = src.dim() == 5
        clip = src if is_clip else src.unsqueeze(1)  # [B, T, 3, H, W]
        batch_size = clip.size(0)
        frames = fold_time(clip)  # [B·T, 3, H, W]
        frames_sm = downsample(frames, downsample_ratio)  # [B·T, 3, h, w]
        hid, (r1, r2, r3, r4) = self.encode(frames_sm, [r1, r2, r3, r4], batch_size)  # hid [B·T, 16, h, w]
        if segmentation_pass:
            seg = self.segment(hid)  # [B·T, 1, h, w]
            return [restore_time(seg, batch_size, is_clip), r1, r2, r3, r4]
        A, b = self.coefficients(frames_sm, hid, downsample_ratio != 1)  # [B·T, 4, h, w] (b full size at ratio 1)
        fgr, pha = self.compose(A, b, frames)  # [B·T, 3, H, W], [B·T, 1, H, W]
        return [restore_time(fgr, batch_size, is_clip), restore_time(pha, batch_size, is_clip), r1, r2, r3, r4]

    def encode(self, src_sm: Tensor, states: List[Optional[Tensor]], batch_size: int) -> Tuple[Tensor, List[Tensor]]:
        """Encoder, LR-ASPP and recurrent decoder: ``src_sm`` ``[B·T, 3, h, w]`` and the states r1..r4
        ``[B, C, ·, ·]`` (None = zeros) → hidden ``[B·T, 16, h, w]`` and the states after the last frame."""
        raise NotImplementedError

    def segment(self, hid: Tensor) -> Tensor:
        """The segmentation head: hidden ``[N, 16, h, w]`` → logit ``[N, 1, h, w]``."""
        raise NotImplementedError

    def coefficients(self, src_sm: Tensor, hid: Tensor, refine: bool) -> Tuple[Optional[Tensor], Tensor]:
        """The matting head and, when ``refine``, the refiner: → A, b ``[N, 4, h, w]``; without ``refine``
        A = None and b = the projected prediction ``[N, 4, h, w]`` (fgr residual, pha) at ``src_sm``'s size."""
        raise NotImplementedError

    def compose(self, A: Optional[Tensor], b: Tensor, src: Tensor) -> Tuple[Tensor, Tensor]:
        """The full-resolution step: coefficients and the source ``[N, 3, H, W]`` → fgr, pha in [0, 1]."""
        raise NotImplementedError
