"""Regularisers that narrow the train/test gap: label smoothing, weight decay, dropout, early stopping.

None of them was designed as a privacy defense; they are the baselines every privacy defense has to
beat (as in the RelaxLoss and DMP evaluations). The helpers at the top are shared by the other
training-time defenses of this package.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from cyphercat.config import TrainingSpec
from cyphercat.defenses.base import Defense, DefenseData, defense
from cyphercat.errors import CyphercatError
from cyphercat.training.trainer import predict_logits, train_model

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU, nn.Tanh, nn.Mish)


def require_torch(net: Any, name: str) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise CyphercatError(f"defenses.{name}", f"{name} changes how a torch model trains, but the target is a "
                             f"{type(net).__name__}", "use a torch architecture, or an inference-time defense")
    return net


def holdout(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Split (x, y) into (kept, held out) with a seeded permutation. Used when a model is trained without
    the defender's extra data (the attacker's transfer shadow): the attacker carves it from its own data."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_out = max(1, int(round(fraction * len(y))))
    keep, out = np.sort(order[n_out:]), np.sort(order[:n_out])
    return x[keep], y[keep], x[out], y[out]


def reference_data(x: np.ndarray, y: np.ndarray, aux: DefenseData | None, seed: int, name: str):
    """(private x, private y, reference x, reference y): the defender's non-member reference records, or
    half of the training data when no reference split is available (transfer shadow)."""
    if aux is None:
        return holdout(x, y, 0.5, seed)
    if len(aux.reference_y) == 0:
        raise CyphercatError(f"defenses.{name}", f"{name} needs the defender's reference records but the "
                             "defender split is empty", "shrink the other splits or set splits.defender > 0")
    return x, y, aux.reference_x, aux.reference_y


@defense("label_smoothing")
class LabelSmoothing(Defense):
    description = "cross-entropy against smoothed labels (1 − s on the true class); lowers confidence on members"

    def __init__(self, smoothing: float = 0.1):
        if not 0 < smoothing < 1:
            raise ValueError("smoothing must be in (0, 1)")
        self.smoothing = smoothing

    def train(self, net, x, y, training, seed, device, aux):
        def loss(logits, target):
            return nn.functional.cross_entropy(logits, target, label_smoothing=self.smoothing)

        return train_model(require_torch(net, "label_smoothing"), x, y, training, seed, device, loss_fn=loss)


@defense("weight_decay")
class WeightDecay(Defense):
    description = "L2 weight decay in the optimiser (replaces training.weight_decay)"

    def __init__(self, weight_decay: float = 5e-3):
        if weight_decay <= 0:
            raise ValueError("weight_decay must be > 0")
        self.weight_decay = weight_decay

    def train(self, net, x, y, training: TrainingSpec, seed, device, aux):
        spec = training.model_copy(update={"weight_decay": float(self.weight_decay)})
        return train_model(require_torch(net, "weight_decay"), x, y, spec, seed, device)


@defense("dropout")
class Dropout(Defense):
    description = "dropout with rate p after every activation layer of the architecture"

    def __init__(self, p: float = 0.5):
        if not 0 < p < 1:
            raise ValueError("p must be in (0, 1)")
        self.p = p

    def prepare_module(self, net: nn.Module) -> nn.Module:
        """Put ``Dropout(p)`` after each activation module. The activation is replaced in place by
        ``Sequential(activation, Dropout)``; neither holds parameters, so state-dict keys do not change
        and cached weights load into a freshly built model (with or without this call)."""
        count = 0
        for module in list(net.modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, ACTIVATIONS):
                    setattr(module, child_name, nn.Sequential(child, nn.Dropout(self.p)))
                    count += 1
        if count == 0:
            raise CyphercatError("defenses.dropout", f"{type(net).__name__} has no activation layer modules to put "
                                 "dropout after", "use the architecture's own dropout parameter instead")
        return net

    def check(self, aux: DefenseData) -> None:
        self.prepare_module(require_torch(aux.build(0), "dropout"))

    def train(self, net, x, y, training, seed, device, aux):
        net = self.prepare_module(require_torch(net, "dropout"))
        return train_model(net, x, y, training, seed, device)


@defense("early_stopping")
class EarlyStopping(Defense):
    description = "stop when the loss on the validation split (splits.validation) stops improving; keep the best"

    def __init__(self, patience: int = 10, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError("patience must be at least 1")
        if min_delta < 0:
            raise ValueError("min_delta must be >= 0")
        self.patience = patience
        self.min_delta = min_delta

    def check(self, aux: DefenseData) -> None:
        if len(aux.validation_y) == 0:
            raise CyphercatError("defenses.early_stopping", "early stopping needs a validation split, and "
                                 "splits.validation is 0", "set splits.validation (e.g. 200) in the spec; "
                                 "it is kept apart from the non-members attacks are scored on")

    def train(self, net, x, y, training, seed, device, aux):
        net = require_torch(net, "early_stopping")
        if aux is None:  # the attacker's transfer shadow: validate on 20% of its own data
            x, y, vx, vy = holdout(x, y, 0.2, seed)
        else:
            self.check(aux)
            vx, vy = aux.validation_x, aux.validation_y
        vy_t = torch.from_numpy(np.asarray(vy, dtype=np.int64))
        best = {"loss": float("inf"), "epoch": -1, "state": None}

        def on_epoch(epoch: int, model: nn.Module) -> bool:
            logits = torch.from_numpy(predict_logits(model, vx, device))
            loss = float(nn.functional.cross_entropy(logits, vy_t))
            if loss < best["loss"] - self.min_delta:
                best.update(loss=loss, epoch=epoch, state=copy.deepcopy(model.state_dict()))
            return epoch - best["epoch"] >= self.patience

        train_model(net, x, y, training, seed, device, epoch_callback=on_epoch)
        if best["state"] is not None:
            net.load_state_dict(best["state"])
        self.info_ = {"best_epoch": best["epoch"] + 1, "validation_loss": round(best["loss"], 6)}
        return net.eval()
