"""The fast path's full-resolution work in one pass over the pixels, and the 8-bit input and outputs of conversion.

The faithful ``compose`` stage (:func:`model.guided_filter.compose`) upsamples A and b to full size, builds the
4-channel guide, multiplies, adds, adds the source and clamps: about ten full-resolution passes, which dominate the
frame time at HD and above. :func:`upsample_compose` computes the same

    fgr = clamp(up(A)[:3]·src + up(b)[:3] + src, 0, 1)
    pha = clamp(up(A)[3]·mean(src) + up(b)[3], 0, 1)        (up = bilinear, align_corners=False)

with one read of ``src`` and one write of fgr and pha per pixel. On CPU (float32) it runs the C kernel
(``kernel.c``, built by ``kernel.py``); elsewhere (GPU, other dtypes, no compiler) a PyTorch version with few
passes, which ``torch.compile`` fuses into a single kernel. ``A = None`` means A = 0 (plain bilinear upsampling of b:
the refiner disabled, or b already at full size at ratio 1).

For video conversion on the CPU two more kernels keep full-size frames in 8 bits end to end:
:func:`downsample_uint8` makes the network's low-res float input straight from uint8 frames, and
:func:`render_uint8` writes one uint8 output image straight from A, b and the uint8 frames; its PyTorch definition
is :func:`model.outputs.output_image` (used on other devices, and the reference in the tests).
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..outputs import OUTPUT_KINDS
from .kernel import load_cpu_kernel, require_cpu_kernel


def _coefficient_planes(A: Optional[Tensor], b: Tensor) -> Tensor:
    """``[N, 8, h, w]`` = [A, b], or just b ``[N, 4, h, w]`` when A is None (A = 0)."""
    return b if A is None else torch.cat([A, b], dim=1)


def upsample_compose_torch(A: Optional[Tensor], b: Tensor, src: Tensor) -> Tuple[Tensor, Tensor]:
    """The PyTorch version of :func:`upsample_compose`: one upsample, multiply-adds, in-place clamps."""
    if A is None and b.shape[-2:] == src.shape[-2:]:  # b is the prediction at full size (no refiner, ratio 1)
        return (b[:, :3] + src).clamp_(0.0, 1.0), b[:, 3:].clamp(0.0, 1.0)
    coef = F.interpolate(_coefficient_planes(A, b), src.shape[-2:], mode="bilinear", align_corners=False)
    if A is None:  # coef [N, 4, H, W] = up(b)
        return (coef[:, :3] + src).clamp_(0.0, 1.0), coef[:, 3:].clamp(0.0, 1.0)
    # coef [N, 8, H, W] = [up(A), up(b)]
    fgr = torch.addcmul(coef[:, 4:7], coef[:, :3], src).add_(src).clamp_(0.0, 1.0)
    pha = torch.addcmul(coef[:, 7:], coef[:, 3:4], src.mean(1, keepdim=True)).clamp_(0.0, 1.0)
    return fgr, pha


def upsample_compose(A: Optional[Tensor], b: Tensor, src: Tensor, *, use_kernel: bool = True) -> Tuple[Tensor, Tensor]:
    """Low-res A, b ``[N, 4, h, w]`` and full-res src ``[N, 3, H, W]`` → fgr ``[N, 3, H, W]``, pha ``[N, 1, H, W]``:
    the fast path's ``compose`` stage, computing what :func:`model.guided_filter.compose` computes.

    Uses the C kernel for CPU float32 input when ``use_kernel`` and it can be built, else
    :func:`upsample_compose_torch`.
    """
    kernel = load_cpu_kernel() if use_kernel and src.device.type == "cpu" and src.dtype == torch.float32 else None
    full_size = A is None and b.shape[-2:] == src.shape[-2:]  # nothing to upsample: the few-pass version is as fast
    if kernel is None or full_size or torch.is_grad_enabled() and (src.requires_grad or b.requires_grad):
        return upsample_compose_torch(A, b, src)
    coef = _coefficient_planes(A, b).to(torch.float32).contiguous()  # [N, 8|4, h, w]
    src = src.contiguous()  # [N, 3, H, W]
    n, _, height, width = src.shape
    fgr = torch.empty_like(src)
    pha = torch.empty((n, 1, height, width), dtype=src.dtype)
    status = kernel.rvm_upsample_compose(
        coef.data_ptr(), int(A is not None), src.data_ptr(), fgr.data_ptr(), pha.data_ptr(),
        n, coef.size(2), coef.size(3), height, width, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise MemoryError("The fused CPU kernel could not allocate its row buffers; free memory or use smaller input.")
    return fgr, pha


# ---- 8-bit input and outputs ----------------------------------------------------------------------------------


def _check_frames(frames: Tensor) -> None:
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.size(-1) != 3 or frames.device.type != "cpu":
        raise ValueError(f"Expected uint8 RGB frames [N, H, W, 3] on the CPU, got {frames.dtype} {list(frames.shape)}.")


def downsample_uint8(frames: Tensor, downsample_ratio: float) -> Tensor:
    """uint8 frames ``[N, H, W, 3]`` → the network's input ``[N, 3, h, w]`` float32, equal to
    ``F.interpolate(frames / 255 as [N, 3, H, W], scale_factor=downsample_ratio, mode='bilinear',
    align_corners=False, recompute_scale_factor=False)`` without making the full-size float frames (C kernel)."""
    _check_frames(frames)
    if not 0 < downsample_ratio < 1:
        raise ValueError(f"downsample_ratio {downsample_ratio} must be in (0, 1) here; at 1 the frames are not resized.")
    frames = frames.contiguous()
    n, height, width, _ = frames.shape
    h, w = math.floor(height * downsample_ratio), math.floor(width * downsample_ratio)  # as F.interpolate (float64)
    out = torch.empty((n, 3, h, w), dtype=torch.float32)
    status = require_cpu_kernel().rvm_downsample_u8(
        frames.data_ptr(), out.data_ptr(), n, height, width, h, w, float(downsample_ratio), torch.get_num_threads()
    )
    if status != 0:
        raise MemoryError("The 8-bit input kernel could not allocate its tables; free memory or use smaller input.")
    return out


def render_uint8(
    kind: str, A: Optional[Tensor], b: Tensor, frames: Tensor, background: Optional[Tensor], *, threads: int = 1
) -> Tensor:
    """One output image straight from the low-res coefficients A, b ``[N, 4, h, w]`` and the uint8 source frames
    ``[N, H, W, 3]``: ``output_image(kind, *upsample_compose(A, b, frames / 255), background)`` in one pass, without
    full-size float images (C kernel, ``threads`` OpenMP threads). Returns uint8 ``[N, H, W, C]``."""
    _check_frames(frames)
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"Unknown output kind {kind!r}; use one of {', '.join(OUTPUT_KINDS)}.")
    frames = frames.contiguous()
    n, height, width, _ = frames.shape
    coef = _coefficient_planes(A, b).to(device="cpu", dtype=torch.float32).contiguous()  # [N, 8|4, h, w]
    colour = torch.zeros(3, dtype=torch.float32)
    image: Optional[Tensor] = None
    if kind == "foreground":
        code, channels = 0, 3
    elif kind == "alpha":
        code, channels = 1, 1
    elif background is None:
        code, channels = 4, 4
    elif background.shape[1:3] == (1, 1):  # a colour [1, 1, 1, 3]
        code, channels = 2, 3
        colour = background.reshape(3).to(torch.float32).div(255)  # as output_image: float(c) / 255
    else:
        code, channels = 3, 3
        image = background.contiguous()
        if image.dtype != torch.uint8 or tuple(image.shape[1:]) != (height, width, 3) or image.size(0) not in (1, n):
            raise ValueError(
                f"Background {image.dtype} {list(image.shape)} must be uint8 [1 or {n}, {height}, {width}, 3]."
            )
    out = torch.empty((n, height, width, channels), dtype=torch.uint8)
    status = require_cpu_kernel().rvm_render_u8(
        coef.data_ptr(), int(A is not None), frames.data_ptr(), None if image is None else image.data_ptr(),
        1 if image is None else image.size(0), colour.data_ptr(), code, out.data_ptr(),
        n, coef.size(2), coef.size(3), height, width, threads,
    )  # fmt: skip
    if status != 0:
        raise MemoryError("The 8-bit output kernel could not allocate its row buffers; free memory or use smaller input.")
    return out
