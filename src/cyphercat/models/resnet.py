"""ResNets for small images: ResNet-18 (CIFAR stem) and ResNet-20 (He et al. 2016, section 4.2).

Also home to the two helpers every conv net in the zoo shares (``image_dims``, ``norm2d``), so that
the choice of normalisation means the same thing in VGG, ResNet, WRN and the audio net.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cyphercat.models.zoo import model

NORMS = ("batch", "group", "none")


def image_dims(input_shape: tuple[int, ...], name: str) -> int:
    """Channels of a (C, H, W) input; anything else is a tabular/text/flat input the net cannot take."""
    if len(input_shape) != 3:
        raise ValueError(f"{name} needs image-like input (C, H, W), got shape {tuple(input_shape)}")
    return int(input_shape[0])


def norm2d(kind: str, channels: int) -> nn.Module:
    """Batch norm (the papers' choice), group norm (works with DP-SGD and ``vmap``) or nothing."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        # 32 groups as in Wu & He (2018), fewer when a narrow test-size net has fewer channels.
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


def pooled_head(channels: int, num_classes: int, dropout: float = 0.0) -> list[nn.Module]:
    """Global average pool, optional dropout, one linear layer: the classifier every conv net here ends with."""
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), *([nn.Dropout(dropout)] if dropout else []),
            nn.Linear(channels, num_classes)]


def kaiming_init(net: nn.Module) -> None:
    """He initialisation of conv weights (fan-out, ReLU), as the ResNet and WRN papers do."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual. ``shortcut="conv"`` projects with a 1x1 conv when the shape changes
    (ResNet-18); ``"pad"`` subsamples and zero-pads channels, adding no parameters (ResNet-20, option A)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, shortcut: str = "conv"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none")
        self.bn1 = norm2d(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=norm == "none")
        self.bn2 = norm2d(norm, c_out)
        self.stride = stride
        self.pad = c_out - c_in
        self.project: nn.Module | None = None
        if (stride != 1 or c_in != c_out) and shortcut == "conv":
            self.project = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=norm == "none"), norm2d(norm, c_out))

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            return self.project(x)
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = nn.functional.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self._shortcut(x))


class ResNet(nn.Module):
    def __init__(self, c_in: int, num_classes: int, widths: tuple[int, ...], blocks: tuple[int, ...],
                 norm: str, shortcut: str):
        super().__init__()
        # CIFAR stem: one 3x3 conv and no max-pool, so 8x8 and 32x32 inputs keep their resolution.
        self.stem = nn.Sequential(nn.Conv2d(c_in, widths[0], 3, 1, 1, bias=norm == "none"),
                                  norm2d(norm, widths[0]), nn.ReLU())
        layers: list[nn.Module] = []
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(c, w, 2 if i > 0 and j == 0 else 1, norm, shortcut))
                c = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


@model("resnet18", ("image", "audio"), "ResNet-18, CIFAR variant (3x3 stem, no max-pool), 4 stages x 2 blocks")
def resnet18(input_shape, num_classes, width: int = 64, norm: str = "batch") -> nn.Module:
    c_in = image_dims(input_shape, "resnet18")
    widths = tuple(int(width) * m for m in (1, 2, 4, 8))
    return ResNet(c_in, num_classes, widths, (2, 2, 2, 2), norm, shortcut="conv")


@model("resnet20", ("image", "audio"), "ResNet-20 for CIFAR (He et al.): 3 stages x 3 blocks, 16/32/64 channels")
def resnet20(input_shape, num_classes, width: int = 16, norm: str = "batch") -> nn.Module:
    c_in = image_dims(input_shape, "resnet20")
    widths = tuple(int(width) * m for m in (1, 2, 4))
    return ResNet(c_in, num_classes, widths, (3, 3, 3), norm, shortcut="pad")
