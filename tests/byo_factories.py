"""Factories a YAML spec names by import path (``tests.byo_factories:...`` style) in test_byo.py."""

import numpy as np
from torch import nn

from cyphercat.data.base import Dataset


def tiny_net(input_shape, num_classes, width: int = 64):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.ReLU(),
                         nn.Linear(width, num_classes))


def blobs(data_dir=None, n: int = 600):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 20)) + y[:, None]).astype(np.float32)
    return Dataset(x=x, y=y.astype(np.int64), name="blobs", modality="tabular", num_classes=3)
