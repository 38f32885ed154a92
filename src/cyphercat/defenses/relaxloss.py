"""RelaxLoss (Chen, Yu & Fritz, ICLR 2022): keep the training loss near a target level α instead of
driving it to zero, so members' losses look like non-members'.

On even epochs each batch minimises |CE − α| (gradient descent above α, ascent below). On odd epochs
a batch above α takes a normal descent step; a batch below α takes a posterior-flattening step:
correctly classified records are pulled towards a soft target that keeps their current true-class
probability (clamped at ``upper``) and spreads the rest evenly over the other classes; misclassified
records keep plain cross-entropy (the paper's description; the authors' code flattens every record).
The soft target is detached, so only the non-true-class posteriors move.
"""

from __future__ import annotations

import torch
from torch import nn

from cyphercat.defenses.base import Defense, defense
from cyphercat.defenses.regularization import require_torch
from cyphercat.training.trainer import train_model


@defense("relaxloss")
class RelaxLoss(Defense):
    description = "hold the training loss near alpha with ascent steps and posterior flattening (Chen et al. 2022)"

    def __init__(self, alpha: float = 1.0, upper: float = 1.0):
        if alpha <= 0:
            raise ValueError("alpha must be > 0")
        if not 0 < upper <= 1:
            raise ValueError("upper must be in (0, 1]")
        self.alpha = alpha
        self.upper = upper

    def train(self, net, x, y, training, seed, device, aux):
        net = require_torch(net, "relaxloss")
        state = {"epoch": 0}

        def loss_fn(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            ce_each = nn.functional.cross_entropy(logits, yb, reduction="none")
            ce = ce_each.mean()
            if state["epoch"] % 2 == 0:
                return (ce - self.alpha).abs()
            if ce > self.alpha:
                return ce
            k = logits.shape[1]
            with torch.no_grad():
                p_y = torch.softmax(logits, dim=1).gather(1, yb[:, None]).clamp(max=self.upper)
                onehot = nn.functional.one_hot(yb, k).to(logits.dtype)
                soft = onehot * p_y + (1 - onehot) * (1 - p_y) / max(k - 1, 1)
                correct = (logits.argmax(dim=1) == yb).to(logits.dtype)
            flat = -(soft * nn.functional.log_softmax(logits, dim=1)).sum(dim=1)
            return (correct * flat + (1 - correct) * ce_each).mean()

        def next_epoch(epoch: int, _net) -> bool:
            state["epoch"] = epoch + 1
            return False

        return train_model(net, x, y, training, seed, device, loss_fn=loss_fn, epoch_callback=next_epoch)
