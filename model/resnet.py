"""ResNet-50 encoder with a dilated last stage (output stride 16)."""
from typing import List

from torch import Tensor
from torchvision.models.resnet import Bottleneck, ResNet


class ResNet50Encoder(ResNet):
    """torchvision's ResNet-50 without pooling head and classifier, returning four feature maps.

    Input ``[N, 3, H, W]`` RGB in [0, 1] (no normalisation, as published); outputs f1 ``[N, 64, H/2, W/2]``,
    f2 ``[N, 256, H/4, W/4]``, f3 ``[N, 512, H/8, W/8]``, f4 ``[N, 2048, H/16, W/16]`` (sizes rounded up).
    """

    feature_channels = (64, 256, 512, 2048)

    def __init__(self) -> None:
        super().__init__(block=Bottleneck, layers=[3, 4, 6, 3], replace_stride_with_dilation=[False, False, True])
        del self.avgpool
        del self.fc

    def forward(self, x: Tensor) -> List[Tensor]:
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer4(self.layer3(f3))
        return [f1, f2, f3, f4]

    def load_imagenet_weights(self, progress: bool = True) -> None:
        """Load torchvision's ImageNet-1k weights into the encoder (classifier weights are dropped)."""
        from torchvision.models import ResNet50_Weights

        from .weights.imagenet import load_torchvision_weights

        load_torchvision_weights(self, ResNet50_Weights.IMAGENET1K_V1, progress=progress)
