"""The recurrent decoder: ConvGRU bottleneck, three upsampling blocks with ConvGRUs, and an output block.

Per-frame layers see frames folded into the batch axis, ``[B·T, C, H, W]``; the ConvGRUs unfold time with
:func:`unfold_time` and walk it frame by frame.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .time_folding import fold_time, unfold_time


class ConvGRU(nn.Module):
    """Convolutional GRU over ``channels`` channels with a 3×3 kernel (documentation/architecture.md, "Recurrent
    decoder")."""

    def __init__(self, channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.ih = nn.Sequential(nn.Conv2d(channels * 2, channels * 2, kernel_size, padding=padding), nn.Sigmoid())
        self.hh = nn.Sequential(nn.Conv2d(channels * 2, channels, kernel_size, padding=padding), nn.Tanh())

    def step(self, x: Tensor, h: Tensor) -> Tensor:
        """One frame: x, h ``[B, C, H, W]`` → new h ``[B, C, H, W]``."""
        r, z = self.ih(torch.cat([x, h], dim=1)).split(self.channels, dim=1)
        c = self.hh(torch.cat([x, r * h], dim=1))
        return (1 - z) * h + z * c

    def forward(self, x: Tensor, h: Optional[Tensor], batch_size: int) -> Tuple[Tensor, Tensor]:
        """x ``[B·T, C, H, W]``, h ``[B, C, H, W]`` or None (zeros) → (outputs ``[B·T, C, H, W]``, last h)."""
        clip = unfold_time(x, batch_size)  # [B, T, C, H, W]
        state = torch.zeros_like(clip[:, 0]) if h is None else h  # [B, C, H, W]
        outputs: List[Tensor] = []
        for frame in clip.unbind(1):
            state = self.step(frame, state)
            outputs.append(state)
        return fold_time(torch.stack(outputs, dim=1)), state


class BottleneckBlock(nn.Module):
    """decode4: a ConvGRU on the second half of the channels; the first half passes through."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gru = ConvGRU(channels // 2)

    def forward(self, x: Tensor, r: Optional[Tensor], batch_size: int) -> Tuple[Tensor, Tensor]:
        a, b = x.split(self.channels // 2, dim=1)
        b, r = self.gru(b, r, batch_size)
        return torch.cat([a, b], dim=1), r


class UpsamplingBlock(nn.Module):
    """decode3..decode1: upsample ×2, crop to the skip, concat [x, skip, source], conv-BN-ReLU, half ConvGRU."""

    def __init__(self, in_channels: int, skip_channels: int, src_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels + skip_channels + src_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.gru = ConvGRU(out_channels // 2)

    def forward(self, x: Tensor, skip: Tensor, s: Tensor, r: Optional[Tensor], batch_size: int) -> Tuple[Tensor, Tensor]:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = x[:, :, : skip.size(2), : skip.size(3)]
        x = self.conv(torch.cat([x, skip, s], dim=1))  # [B·T, out, h, w]
        a, b = x.split(self.out_channels // 2, dim=1)
        b, r = self.gru(b, r, batch_size)
        return torch.cat([a, b], dim=1), r


class OutputBlock(nn.Module):
    """decode0: upsample ×2, crop to the source, concat [x, source], two conv-BN-ReLU; no recurrence."""

    def __init__(self, in_channels: int, src_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels + src_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = x[:, :, : s.size(2), : s.size(3)]
        return self.conv(torch.cat([x, s], dim=1))


class RecurrentDecoder(nn.Module):
    """Decode the features of ``src_sm`` into a 16-channel hidden map at ``src_sm`` size plus four new states.

    Inputs (frames folded): s0 ``[B·T, 3, h, w]``, f1..f4 at 1/2..1/16 (f4 after LR-ASPP), r1..r4 ``[B, C, ·, ·]``
    or None. Outputs: hidden ``[B·T, 16, h, w]``; r1 ``[B, d1/2, h/2, w/2]``, r2 1/4, r3 1/8, r4 ``[B, f4/2, h/16, w/16]``.
    """

    def __init__(self, feature_channels: List[int], decoder_channels: List[int]) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d(2, 2, count_include_pad=False, ceil_mode=True)
        self.decode4 = BottleneckBlock(feature_channels[3])
        self.decode3 = UpsamplingBlock(feature_channels[3], feature_channels[2], 3, decoder_channels[0])
        self.decode2 = UpsamplingBlock(decoder_channels[0], feature_channels[1], 3, decoder_channels[1])
        self.decode1 = UpsamplingBlock(decoder_channels[1], feature_channels[0], 3, decoder_channels[2])
        self.decode0 = OutputBlock(decoder_channels[2], 3, decoder_channels[3])

    def forward(
        self,
        s0: Tensor,
        f1: Tensor,
        f2: Tensor,
        f3: Tensor,
        f4: Tensor,
        r1: Optional[Tensor],
        r2: Optional[Tensor],
        r3: Optional[Tensor],
        r4: Optional[Tensor],
        batch_size: int,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        s1 = self.avgpool(s0)  # [B·T, 3, h/2, w/2]
        s2 = self.avgpool(s1)  # [B·T, 3, h/4, w/4]
        s3 = self.avgpool(s2)  # [B·T, 3, h/8, w/8]
        x4, r4 = self.decode4(f4, r4, batch_size)
        x3, r3 = self.decode3(x4, f3, s3, r3, batch_size)
        x2, r2 = self.decode2(x3, f2, s2, r2, batch_size)
        x1, r1 = self.decode1(x2, f1, s1, r1, batch_size)
        x0 = self.decode0(x1, s0)
        return x0, r1, r2, r3, r4
