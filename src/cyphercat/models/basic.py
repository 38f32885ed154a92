"""Small architectures that work on any modality with fixed-size inputs."""

from __future__ import annotations

import math

from torch import nn

from cyphercat.models.zoo import model


def _flat(input_shape: tuple[int, ...]) -> int:
    return int(math.prod(input_shape))


@model("mlp", ("image", "audio", "tabular"), "fully connected net: flatten, hidden layers with ReLU", batchable=True)
def mlp(input_shape, num_classes, hidden=(512,), dropout: float = 0.0, activation: str = "relu") -> nn.Module:
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = _flat(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), acts[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@model("logreg", ("image", "audio", "tabular"), "multinomial logistic regression (one linear layer)", batchable=True)
def logreg(input_shape, num_classes) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(_flat(input_shape), num_classes))


@model("cnn", ("image", "audio"), "small conv net: two 3x3 conv blocks with max-pooling, then a linear head",
       batchable=True)
def cnn(input_shape, num_classes, channels=(32, 64), hidden: int = 128, dropout: float = 0.0) -> nn.Module:
    if len(input_shape) != 3:
        raise ValueError(f"cnn needs image-like input (C, H, W), got {tuple(input_shape)}")
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, int(out), 3, padding=1), nn.ReLU()]
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = int(out)
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, num_classes))
    return nn.Sequential(*layers)
