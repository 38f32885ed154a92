"""A conv net for log-mel spectrograms (N x 1 x n_mels x T), of the kind used for speaker and keyword
classification: 3x3 conv blocks with pooling, then a global average over frequency and time, so
clips of any length share one set of weights.
"""

from __future__ import annotations

from torch import nn

from cyphercat.models.resnet import image_dims, norm2d, pooled_head
from cyphercat.models.zoo import model


@model("audio_cnn", ("audio", "image"), "conv net on log-mels: 3x3 conv blocks with pooling, global average, linear",
       batchable=True)
def audio_cnn(input_shape, num_classes, channels=(32, 64, 128, 128), norm: str = "group",
              dropout: float = 0.0) -> nn.Module:
    c = image_dims(input_shape, "audio_cnn")
    layers: list[nn.Module] = []
    for out in channels:
        out = int(out)
        # Group norm by default: spectrogram levels vary by recording, and unlike batch norm it keeps the
        # net trainable many-at-once with vmap and under DP-SGD.
        layers += [nn.Conv2d(c, out, 3, padding=1, bias=norm == "none"), norm2d(norm, out), nn.ReLU(),
                   nn.MaxPool2d(2, ceil_mode=True)]
        c = out
    return nn.Sequential(*layers, *pooled_head(c, num_classes, dropout))
