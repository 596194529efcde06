"""BatchNorm folding: an eval-mode BatchNorm after a convolution is an affine map per channel, so it can be merged
into that convolution's weights and bias without changing the function (up to float rounding)."""
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into that conv, in place.

    Handles the two layouts the network uses: ``nn.Sequential(conv, bn, ...)`` (MobileNetV3, decoder, LR-ASPP,
    refiner, ResNet downsample) and sibling attributes ``convK`` / ``bnK`` (ResNet stem and bottlenecks). The
    BatchNorm is replaced by ``nn.Identity``. Returns the number of BatchNorms folded.
    """
    folded = 0
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            for i in range(len(parent) - 1):
                if isinstance(parent[i], nn.Conv2d) and isinstance(parent[i + 1], nn.BatchNorm2d):
                    parent[i] = fuse_conv_bn_eval(parent[i], parent[i + 1])
                    parent[i + 1] = nn.Identity()
                    folded += 1
        children = dict(parent.named_children())
        for name, child in children.items():
            conv_name = "conv" + name[2:]
            conv = children.get(conv_name)
            if name.startswith("bn") and isinstance(child, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, child))
                setattr(parent, name, nn.Identity())
                folded += 1
    return folded
