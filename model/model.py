"""MattingNetwork: the Robust Video Matting model (SPEC §2)."""
from typing import List, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from .decoder import RecurrentDecoder
from .deep_guided_filter import DeepGuidedFilterRefiner
from .fast_guided_filter import FastGuidedFilterRefiner
from .lraspp import LRASPP
from .mobilenetv3 import MobileNetV3LargeEncoder
from .resnet import ResNet50Encoder
from .time_folding import fold_time, unfold_time

VARIANTS = ("mobilenetv3", "resnet50")
REFINERS = ("deep_guided_filter", "fast_guided_filter")


def auto_downsample_ratio(height: int, width: int) -> float:
    """The published default ratio: bring the longer side to 512 pixels, never upsample."""
    return min(512 / max(height, width), 1.0)


class Projection(nn.Module):
    """A 1×1 convolution with bias (the matting and segmentation heads)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class MattingNetwork(nn.Module):
    """Robust Video Matting: encoder → LR-ASPP → recurrent decoder → projection → guided-filter refiner.

    Args:
        variant: ``'mobilenetv3'`` (3.7 M parameters) or ``'resnet50'`` (26.9 M).
        refiner: ``'deep_guided_filter'`` (learned, as published) or ``'fast_guided_filter'`` (no weights).
        pretrained_backbone: load torchvision's ImageNet weights into the encoder (needs the file in the
            torch.hub cache or a network connection; fails clearly otherwise).
    """

    def __init__(
        self, variant: str = "mobilenetv3", refiner: str = "deep_guided_filter", pretrained_backbone: bool = False
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
        if refiner not in REFINERS:
            raise ValueError(f"Unknown refiner {refiner!r}; choose one of {', '.join(REFINERS)}.")
        self.variant = variant
        self.refiner_name = refiner

        if variant == "mobilenetv3":
            self.backbone = MobileNetV3LargeEncoder()
            self.aspp = LRASPP(960, 128)
            self.decoder = RecurrentDecoder([16, 24, 40, 128], [80, 40, 32, 16])
        else:
            self.backbone = ResNet50Encoder()
            self.aspp = LRASPP(2048, 256)
            self.decoder = RecurrentDecoder([64, 256, 512, 256], [128, 64, 32, 16])
        if pretrained_backbone:
            self.backbone.load_imagenet_weights()

        self.project_mat = Projection(16, 4)
        self.project_seg = Projection(16, 1)
        if refiner == "deep_guided_filter":
            self.refiner = DeepGuidedFilterRefiner()
        else:
            self.refiner = FastGuidedFilterRefiner()

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
        self._check_inputs(src, [r1, r2, r3, r4], downsample_ratio)
        is_clip = src.dim() == 5
        clip = src if is_clip else src.unsqueeze(1)  # [B, T, 3, H, W]
        batch_size = clip.size(0)
        frames = fold_time(clip)  # [B·T, 3, H, W]
        if downsample_ratio != 1:
            frames_sm = F.interpolate(
                frames, scale_factor=downsample_ratio, mode="bilinear", align_corners=False, recompute_scale_factor=False
            )  # [B·T, 3, h, w]
        else:
            frames_sm = frames

        hid, r1, r2, r3, r4 = self._decode(frames_sm, r1, r2, r3, r4, batch_size)  # hid [B·T, 16, h, w]

        if segmentation_pass:
            seg = self.project_seg(hid)  # [B·T, 1, h, w]
            return [self._restore_time(seg, batch_size, is_clip), r1, r2, r3, r4]

        fgr, pha = self._matte(frames, frames_sm, hid, downsample_ratio)  # [B·T, 3, H, W], [B·T, 1, H, W]
        return [
            self._restore_time(fgr, batch_size, is_clip),
            self._restore_time(pha, batch_size, is_clip),
            r1,
            r2,
            r3,
            r4,
        ]

    def _decode(
        self,
        frames_sm: Tensor,
        r1: Optional[Tensor],
        r2: Optional[Tensor],
        r3: Optional[Tensor],
        r4: Optional[Tensor],
        batch_size: int,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Encoder, LR-ASPP and recurrent decoder on ``frames_sm`` ``[B·T, 3, h, w]`` → hidden ``[B·T, 16, h, w]``
        and the new states. A separate step so that the fast path (model/fast_path.py) can swap its implementation."""
        f1, f2, f3, f4 = self.backbone(frames_sm)
        f4 = self.aspp(f4)  # [B·T, 128|256, h/16, w/16]
        return self.decoder(frames_sm, f1, f2, f3, f4, r1, r2, r3, r4, batch_size)

    def _matte(self, frames: Tensor, frames_sm: Tensor, hid: Tensor, downsample_ratio: float) -> Tuple[Tensor, Tensor]:
        """Matting head, refiner, residual and clamps → fgr ``[B·T, 3, H, W]``, pha ``[B·T, 1, H, W]`` in [0, 1].
        A separate step so that the fast path can replace it with one fused full-resolution pass."""
        fgr_residual, pha = self.project_mat(hid).split([3, 1], dim=1)  # [B·T, 3, h, w], [B·T, 1, h, w]
        if downsample_ratio != 1:
            fgr_residual, pha = self.refiner(frames, frames_sm, fgr_residual, pha, hid)  # full size
        return (fgr_residual + frames).clamp(0.0, 1.0), pha.clamp(0.0, 1.0)

    @staticmethod
    def _restore_time(x: Tensor, batch_size: int, is_clip: bool) -> Tensor:
        """``[B·T, C, H, W]`` back to the caller's layout: ``[B, T, C, H, W]`` for a clip, else ``[B, C, H, W]``."""
        return unfold_time(x, batch_size) if is_clip else x

    @staticmethod
    def _check_inputs(src: Tensor, states: List[Optional[Tensor]], downsample_ratio: float) -> None:
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

    def optimizer_groups(
        self,
        *,
        backbone: float = 1e-4,
        aspp: float = 2e-4,
        decoder: float = 2e-4,
        refiner: float = 0.0,
    ) -> List[dict]:
        """Parameter groups of the published training recipe, for ``torch.optim.Adam(model.optimizer_groups(...))``.

        Every parameter is in exactly one group: backbone, aspp, decoder, the two projection heads (at the
        decoder's rate) and refiner, in that order (training states store the optimizer per group index).
        The defaults are stage 1's rates; documentation/training.md lists those of every stage.
        """
        parts = [
            ("backbone", self.backbone, backbone),
            ("aspp", self.aspp, aspp),
            ("decoder", self.decoder, decoder),
            ("project_mat", self.project_mat, decoder),
            ("project_seg", self.project_seg, decoder),
            ("refiner", self.refiner, refiner),
        ]
        return [{"name": name, "params": list(part.parameters()), "lr": rate} for name, part, rate in parts]
