"""MattingNetwork: the Robust Video Matting model (documentation/architecture.md)."""
from typing import List, Optional, Tuple

from torch import Tensor, nn

from .decoder import RecurrentDecoder
from .deep_guided_filter import DeepGuidedFilterRefiner
from .fast_guided_filter import FastGuidedFilterRefiner
from .guided_filter import compose
from .lraspp import LRASPP
from .mobilenetv3 import MobileNetV3LargeEncoder
from .pipeline import MattingPipeline
from .resnet import ResNet50Encoder

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


class MattingNetwork(MattingPipeline):
    """Robust Video Matting: encoder → LR-ASPP → recurrent decoder → projection → guided-filter refiner.

    ``forward`` is :class:`~model.pipeline.MattingPipeline`'s; this class implements its stages with the published
    layers (module names, and so the state dict keys, are the published ones).

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

    def features(self, src_sm: Tensor) -> List[Tensor]:
        """Encoder and LR-ASPP: ``src_sm`` ``[N, 3, h, w]`` → f1 1/2, f2 1/4, f3 1/8 and f4 1/16 (after LR-ASPP)."""
        f1, f2, f3, f4 = self.backbone(src_sm)
        return [f1, f2, f3, self.aspp(f4)]  # f4 [N, 128|256, h/16, w/16]

    def encode(self, src_sm: Tensor, states: List[Optional[Tensor]], batch_size: int) -> Tuple[Tensor, List[Tensor]]:
        """:meth:`features`, then the recurrent decoder → hidden ``[B·T, 16, h, w]`` and the new states r1..r4."""
        f1, f2, f3, f4 = self.features(src_sm)
        r1, r2, r3, r4 = states
        hid, r1, r2, r3, r4 = self.decoder(src_sm, f1, f2, f3, f4, r1, r2, r3, r4, batch_size)
        return hid, [r1, r2, r3, r4]

    def segment(self, hid: Tensor) -> Tensor:
        """The segmentation logit ``[N, 1, h, w]``."""
        return self.project_seg(hid)

    def coefficients(self, src_sm: Tensor, hid: Tensor, refine: bool) -> Tuple[Optional[Tensor], Tensor]:
        """``project_mat``, then the refiner's A, b ``[N, 4, h, w]`` when ``refine``; else (None, the projection)."""
        projection = self.project_mat(hid)  # [N, 4, h, w]: fgr residual, pha
        if not refine:
            return None, projection
        fgr_residual, pha = projection.split([3, 1], dim=1)  # [N, 3, h, w], [N, 1, h, w]
        return self.refiner.coefficients(src_sm, fgr_residual, pha, hid)

    def compose(self, A: Optional[Tensor], b: Tensor, src: Tensor) -> Tuple[Tensor, Tensor]:
        """The faithful full-resolution step (:func:`model.guided_filter.compose`)."""
        return compose(A, b, src)

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
