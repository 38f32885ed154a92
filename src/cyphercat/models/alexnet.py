"""AlexNet (Krizhevsky et al. 2012), the small-image variant used in membership-inference papers on CIFAR:
five 3x3-ish conv layers with three max-pools, then a dropout-regularised dense head.

The first conv has stride 2 (instead of 11x11 stride 4, which would erase a 32x32 image); the conv
output is pooled adaptively to 2x2 so any input of 8x8 or more gives the same head.
"""

from __future__ import annotations

from torch import nn

from cyphercat.models.resnet import image_dims
from cyphercat.models.zoo import model

# Channels of the five convs relative to ``width`` (64, 192, 384, 256, 256 at the default width 64).
RATIOS = (1, 3, 6, 4, 4)


@model("alexnet", ("image", "audio"), "AlexNet, CIFAR variant: 5 conv layers, 3 max-pools, dense head with dropout",
       batchable=True)
def alexnet(input_shape, num_classes, width: int = 64, hidden=(4096, 4096), dropout: float = 0.5) -> nn.Module:
    c = image_dims(input_shape, "alexnet")
    c1, c2, c3, c4, c5 = (int(width) * r for r in RATIOS)
    layers: list[nn.Module] = [
        nn.Conv2d(c, c1, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
    ]
    features = c5 * 4
    for units in hidden:
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(features, int(units)), nn.ReLU()]
        features = int(units)
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
