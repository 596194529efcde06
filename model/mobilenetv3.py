"""MobileNetV3-Large encoder with a dilated last stage (output stride 16)."""
from typing import List

import torch
from torch import Tensor
from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3

# (input ch, kernel, expanded ch, output ch, squeeze-excite, activation, stride, dilation): MobileNetV3-Large
# with the last stage dilated (documentation/architecture.md, "Encoders").
_LARGE_DILATED_SETTINGS = [
    (16, 3, 16, 16, False, "RE", 1, 1),
    (16, 3, 64, 24, False, "RE", 2, 1),
    (24, 3, 72, 24, False, "RE", 1, 1),
    (24, 5, 72, 40, True, "RE", 2, 1),
    (40, 5, 120, 40, True, "RE", 1, 1),
    (40, 5, 120, 40, True, "RE", 1, 1),
    (40, 3, 240, 80, False, "HS", 2, 1),
    (80, 3, 200, 80, False, "HS", 1, 1),
    (80, 3, 184, 80, False, "HS", 1, 1),
    (80, 3, 184, 80, False, "HS", 1, 1),
    (80, 3, 480, 112, True, "HS", 1, 1),
    (112, 3, 672, 112, True, "HS", 1, 1),
    (112, 5, 672, 160, True, "HS", 2, 2),
    (160, 5, 960, 160, True, "HS", 1, 2),
    (160, 5, 960, 160, True, "HS", 1, 2),
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MobileNetV3LargeEncoder(MobileNetV3):
    """torchvision's MobileNetV3-Large without pooling and classifier, returning four feature maps.

    Input ``[N, 3, H, W]`` RGB in [0, 1]; outputs f1 ``[N, 16, H/2, W/2]``, f2 ``[N, 24, H/4, W/4]``,
    f3 ``[N, 40, H/8, W/8]``, f4 ``[N, 960, H/16, W/16]`` (sizes rounded up).
    """

    feature_channels = (16, 24, 40, 960)

    def __init__(self) -> None:
        settings = [InvertedResidualConfig(*row, width_mult=1.0) for row in _LARGE_DILATED_SETTINGS]
        super().__init__(inverted_residual_setting=settings, last_channel=1280)
        del self.avgpool
        del self.classifier
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = (x - self.mean) / self.std
        features: List[Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in [1, 3, 6, 16]:  # f1 1/2, f2 1/4, f3 1/8, f4 1/16
                features.append(x)
        return features

    def load_imagenet_weights(self, progress: bool = True) -> None:
        """Load torchvision's ImageNet-1k weights into the encoder (classifier weights are dropped)."""
        from torchvision.models import MobileNet_V3_Large_Weights

        from .weights.imagenet import load_torchvision_weights

        load_torchvision_weights(self, MobileNet_V3_Large_Weights.IMAGENET1K_V1, progress=progress)
