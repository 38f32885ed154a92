"""VGG-11 and VGG-16 (Simonyan & Zisserman 2015), CIFAR variants: 3x3 convs, global pooling, one linear head.

``width`` is the first stage's channels (64 in the paper); later stages double up to 8x. Max-pools use
``ceil_mode`` so that the five halvings still work on 8x8 inputs (a 1x1 map stays 1x1).
"""

from __future__ import annotations

from torch import nn

from cyphercat.models.resnet import image_dims, norm2d, pooled_head
from cyphercat.models.zoo import model

# Stage multipliers of ``width``; "M" is a 2x2 max-pool (configurations A and D of the paper).
CONFIGS = {
    "vgg11": (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"),
    "vgg16": (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"),
}


def _vgg(name: str, input_shape, num_classes: int, width: int, norm: str, dropout: float) -> nn.Module:
    c = image_dims(input_shape, name)
    layers: list[nn.Module] = []
    for item in CONFIGS[name]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        out = int(width) * int(item)
        layers += [nn.Conv2d(c, out, 3, padding=1, bias=norm == "none"), norm2d(norm, out), nn.ReLU()]
        c = out
    return nn.Sequential(*layers, *pooled_head(c, num_classes, dropout))


@model("vgg11", ("image", "audio"), "VGG-11, CIFAR variant (norm: batch|group|none, global pool, linear head)")
def vgg11(input_shape, num_classes, width: int = 64, norm: str = "batch", dropout: float = 0.0) -> nn.Module:
    return _vgg("vgg11", input_shape, num_classes, width, norm, dropout)


@model("vgg16", ("image", "audio"), "VGG-16, CIFAR variant (norm: batch|group|none, global pool, linear head)")
def vgg16(input_shape, num_classes, width: int = 64, norm: str = "batch", dropout: float = 0.0) -> nn.Module:
    return _vgg("vgg16", input_shape, num_classes, width, norm, dropout)
