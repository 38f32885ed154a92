"""Wide ResNet (Zagoruyko & Komodakis 2016); WRN-16-4 is the target/reference architecture of LiRA
(Carlini et al. 2022) on CIFAR-10.

Pre-activation blocks (norm, ReLU, conv), depth 16 = 3 groups x 2 blocks, group widths
``width * widen * (1, 2, 4)`` = 64/128/256 for the defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from cyphercat.models.resnet import image_dims, kaiming_init, norm2d
from cyphercat.models.zoo import model


class WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, dropout: float):
        super().__init__()
        self.bn1 = norm2d(norm, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = norm2d(norm, c_out)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.project = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        # When the shape changes the projection reads the pre-activated input, as in the reference code.
        shortcut = x if self.project is None else self.project(pre)
        out = self.conv2(self.drop(torch.relu(self.bn2(self.conv1(pre)))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, c_in: int, num_classes: int, depth: int, widen: int, width: int, norm: str, dropout: float):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 (10, 16, 22, 28, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [int(width) * int(widen) * m for m in (1, 2, 4)]
        self.stem = nn.Conv2d(c_in, int(width), 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        c = int(width)
        for i, w in enumerate(widths):
            for j in range(n):
                blocks.append(WideBlock(c, w, 2 if i > 0 and j == 0 else 1, norm, dropout))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = norm2d(norm, c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(self.pool(out), 1))


@model("wrn16_4", ("image", "audio"), "WideResNet-16-4 (the LiRA architecture); depth/widen adjustable")
def wrn16_4(input_shape, num_classes, width: int = 16, widen: int = 4, depth: int = 16, norm: str = "batch",
            dropout: float = 0.0) -> nn.Module:
    return WideResNet(image_dims(input_shape, "wrn16_4"), num_classes, depth, widen, width, norm, dropout)
