"""Bring your own data and architecture: audit a custom nn.Module trained on your own arrays.

Run: ``.venv/bin/python examples/custom_model.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import cyphercat as cc


class TwoLayerNet(nn.Module):
    """Any nn.Module works; the factory gets the input shape and the number of classes."""

    def __init__(self, n_in: int, n_classes: int, width: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def two_layer_net(input_shape, num_classes):
    return TwoLayerNet(int(np.prod(input_shape)), num_classes)


def main(out: str = "runs/custom") -> cc.results.AuditResult:
    bunch = load_breast_cancer()
    x = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
    dataset = cc.from_arrays(x.astype(np.float32), bunch.target, name="breast_cancer", modality="tabular")
    result = cc.audit(
        dataset=dataset, model=two_layer_net, out=out,
        splits={"target_members": 100, "target_nonmembers": 100, "shadow_members": 100, "shadow_nonmembers": 100},
        attacks=["loss", "ml_leaks_1", "lira_online", "rmia_offline"], reference_models=4,
    )
    for a in result.evaluations[0].attacks:
        print(f"{a.name:14s} AUC {a.metrics.auc:.3f}  TPR@1%FPR {a.metrics.tpr_at_fpr['0.01']:.3f}")
    return result


if __name__ == "__main__":
    main()
