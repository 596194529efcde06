"""An export-friendly front for ``MattingNetwork``: the published ONNX interface as a plain ``nn.Module``.

``MattingNetwork.forward`` takes the downsample ratio as a Python float and ``None`` for empty states. Exported
graphs need tensors for both, so this module takes ``(src, r1i, r2i, r3i, r4i, downsample_ratio)`` with

- ``downsample_ratio`` a float32 tensor ``[1]`` read at run time (the *dynamic* graph), or a ratio baked in at
  construction (the *fixed* graph: static Resize scales, what TensorRT-style builders want);
- states that are either the ``[B, C, h, w]`` tensors returned by the previous frame or any zero tensor that
  broadcasts to them, such as ``[1, 1, 1, 1]`` (what the published ONNX file accepts for the first frame).

It runs the wrapped network's own pipeline stages (``features`` and ``decoder``, ``coefficients``, ``compose``;
model/pipeline.py); only the resize by a tensor ratio and the state broadcast are written here, as ONNX ops
(``torch.onnx.ops.symbolic``) while exporting and as ordinary torch ops otherwise, so the same module runs eagerly
for checks.
"""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .model import MattingNetwork
from .pipeline import downsample

INPUT_NAMES = ("src", "r1i", "r2i", "r3i", "r4i", "downsample_ratio")
OUTPUT_NAMES = ("fgr", "pha", "r1o", "r2o", "r3o", "r4o")


def sizes_agree(side: int, ratio: float) -> bool:
    """Whether PyTorch (floor(side · r) in float64) and onnxruntime (in float32) downsample ``side`` to the same
    size; for some sizes they differ by a pixel (1618 · 512/1618 is 511.99… in float64 but 512 in float32)."""
    return math.floor(side * float(ratio)) == math.floor(np.float32(side) * np.float32(ratio))


def state_channels(model: MattingNetwork) -> Tuple[int, int, int, int]:
    """Channels of the recurrent states r1..r4 (mobilenetv3: 16, 20, 40, 64; resnet50: 16, 32, 64, 128)."""
    decoder = model.decoder
    return (
        decoder.decode1.gru.channels,
        decoder.decode2.gru.channels,
        decoder.decode3.gru.channels,
        decoder.decode4.gru.channels,
    )


class ExportableMattingNetwork(nn.Module):
    """``MattingNetwork`` with the published ONNX interface; returns ``(fgr, pha, r1o, r2o, r3o, r4o)``.

    Args:
        model: the network to wrap (its layers are shared, not copied).
        fixed_downsample_ratio: ``None`` for a graph that reads ``downsample_ratio`` at run time and always runs
            the refiner (as the published ONNX file does); a ratio in (0, 1] to bake it in. A fixed graph ignores
            its ``downsample_ratio`` argument and skips the refiner at ratio 1, exactly like ``MattingNetwork``.
        opset: the ONNX opset of the ops this module writes itself while exporting.
    """

    def __init__(self, model: MattingNetwork, fixed_downsample_ratio: Optional[float] = None, opset: int = 18) -> None:
        super().__init__()
        if fixed_downsample_ratio is not None and not 0.0 < fixed_downsample_ratio <= 1.0:
            raise ValueError(
                f"fixed_downsample_ratio must be in (0, 1]; got {fixed_downsample_ratio}. "
                "Pick e.g. 0.25 for 1080p or 0.125 for 4K, or None for a run-time ratio."
            )
        self.model = model
        self.fixed_downsample_ratio = fixed_downsample_ratio
        self.opset = opset
        self.channels = state_channels(model)

    def forward(
        self,
        src: Tensor,
        r1i: Tensor,
        r2i: Tensor,
        r3i: Tensor,
        r4i: Tensor,
        downsample_ratio: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """src ``[B, 3, H, W]`` RGB in [0, 1]; states ``[B, C, h, w]`` or zeros broadcasting to them; ratio ``[1]``
        (required by a dynamic-ratio module, ignored by a fixed one)."""
        model = self.model
        ratio = self.fixed_downsample_ratio
        if ratio is not None:
            src_sm = downsample(src, ratio)  # static Resize scales
        elif downsample_ratio is None:
            raise ValueError("This module reads the ratio at run time: pass downsample_ratio=torch.tensor([r]).")
        else:
            src_sm = self._downsample(src, downsample_ratio)  # [B, 3, h, w]
        f1, f2, f3, f4 = model.features(src_sm)
        r1, r2, r3, r4 = (
            self._broadcast_state(state, src, feature, channels)
            for state, feature, channels in zip((r1i, r2i, r3i, r4i), (f1, f2, f3, f4), self.channels)
        )  # each [B, C_i, h_i, w_i], the size of the feature it is carried with
        hid, r1, r2, r3, r4 = model.decoder(src_sm, f1, f2, f3, f4, r1, r2, r3, r4, src.size(0))  # hid [B, 16, h, w]
        A, b = model.coefficients(src_sm, hid, ratio is None or ratio != 1)  # the dynamic graph always refines
        fgr, pha = model.compose(A, b, src)  # [B, 3, H, W], [B, 1, H, W]
        return fgr, pha, r1, r2, r3, r4

    def _downsample(self, src: Tensor, downsample_ratio: Tensor) -> Tensor:
        """Bilinear resize by a run-time factor ``[1]``: ``[B, 3, H, W]`` → ``[B, 3, ⌊H·r⌋, ⌊W·r⌋]``.

        ONNX ``Resize`` with a ``scales`` input computes the output size and the sampling grid from the factor,
        the same rule as ``F.interpolate(scale_factor=r, recompute_scale_factor=False)``.
        """
        if not torch.onnx.is_in_onnx_export():
            return downsample(src, float(downsample_ratio.reshape(-1)[0]))
        batch, channels, height, width = src.shape
        size = (torch.stack([torch.tensor(height), torch.tensor(width)]).float() * downsample_ratio).floor().long()
        out_height, out_width = size[0].item(), size[1].item()  # data-dependent sizes, [1, H] and [1, W]
        torch._check(out_height >= 1)
        torch._check(out_width >= 1)
        torch._check(out_height <= height)
        torch._check(out_width <= width)
        for size in (out_height, out_width):
            for _ in range(3):
                torch._check(2 * ((size - 1) // 2) < size)
                size = (size - 1) // 2 + 1
        scales = torch.cat([torch.ones(2, dtype=torch.float32), downsample_ratio.float(), downsample_ratio.float()])
        return torch.onnx.ops.symbolic(
            "Resize",
            (src, None, scales),
            dict(mode="linear", coordinate_transformation_mode="half_pixel"),  # F.interpolate's sampling grid
            dtype=src.dtype,
            shape=(batch, channels, out_height, out_width),
            version=self.opset,
        )  # [B, 3, h, w]

    def _broadcast_state(self, state: Tensor, src: Tensor, feature: Tensor, channels: int) -> Tensor:
        """Expand ``state`` (zeros ``[1, 1, 1, 1]`` or a full state) to ``[B, channels, h, w]`` of ``feature``.

        Written as an ONNX ``Expand`` while exporting so that the state inputs keep free dimensions: the exporter
        cannot prove at trace time that an input state has the feature's (data-dependent) size.
        """
        shape: List[int] = [src.size(0), channels, feature.size(2), feature.size(3)]
        if not torch.onnx.is_in_onnx_export():
            return state.expand(shape)
        target = torch.cat(
            [
                self._shape_of(src, 0, 1),
                torch.tensor([channels], dtype=torch.int64),
                self._shape_of(feature, 2, 4),
            ]
        )  # [4]: B, C, h, w
        return torch.onnx.ops.symbolic("Expand", (state, target), dtype=state.dtype, shape=shape, version=self.opset)

    def _shape_of(self, x: Tensor, start: int, end: int) -> Tensor:
        """The ONNX ``Shape`` of ``x`` from ``start`` to ``end`` as an int64 tensor (export only)."""
        dims: Sequence[int] = x.shape[start:end]
        return torch.onnx.ops.symbolic(
            "Shape", (x,), dict(start=start, end=end), dtype=torch.int64, shape=(len(dims),), version=self.opset
        )
