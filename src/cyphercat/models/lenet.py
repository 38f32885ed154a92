"""LeNet-5 (LeCun et al. 1998): two 5x5 conv layers with pooling, then 120-84-C fully connected.

The paper fed 32x32 inputs (MNIST padded by 2); we pad the first conv instead and pool the second
conv's output adaptively to 5x5, so 8x8 digits, 28x28 MNIST, 32x32 CIFAR and 47x62 LFW all fit with
the paper's 16*5*5 = 400 features into the first dense layer.
"""

from __future__ import annotations

from torch import nn

from cyphercat.models.resnet import image_dims
from cyphercat.models.zoo import model

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


@model("lenet", ("image", "audio"), "LeNet-5: two 5x5 conv + pool layers, dense 120-84 head", batchable=True)
def lenet(input_shape, num_classes, channels=(6, 16), hidden=(120, 84), activation: str = "relu") -> nn.Module:
    c = image_dims(input_shape, "lenet")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    act = ACTIVATIONS[activation]
    c1, c2 = (int(v) for v in channels)
    smaller_side = -(-min(int(input_shape[1]), int(input_shape[2])) // 2)  # after the first (ceil-mode) pool
    layers: list[nn.Module] = [
        nn.Conv2d(c, c1, 5, padding=2), act(), nn.MaxPool2d(2, ceil_mode=True),
        # An unpadded 5x5 conv needs a 5x5 map; small inputs (8x8 digits) keep theirs with padding.
        nn.Conv2d(c1, c2, 5, padding=0 if smaller_side >= 5 else 2), act(), nn.MaxPool2d(2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(5), nn.Flatten(),
    ]
    width = c2 * 25
    for units in hidden:
        layers += [nn.Linear(width, int(units)), act()]
        width = int(units)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
