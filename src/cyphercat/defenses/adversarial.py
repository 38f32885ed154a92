"""Adversarial regularisation (Nasr, Shokri & Houmansadr, CCS 2018): min-max training against an
inference model.

    min_f  E_members[ CE(f(x), y) + λ · log h(f(x), y) ]      (one step of f per batch)
    max_h  E_members[ log h(f(x), y) ] + E_reference[ log(1 − h(f(x'), y')) ]   (``attack_steps`` steps)

h sees the posterior vector and the one-hot label (the paper's two input branches, merged into one
small MLP here) and tells the training batch from a batch of the defender's non-member reference
records. Without reference records (the attacker's transfer shadow) half of the training data
plays that role.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cyphercat.defenses.base import Defense, defense
from cyphercat.defenses.regularization import reference_data, require_torch
from cyphercat.seeding import torch_rng
from cyphercat.training.trainer import resolve_device, to_tensor, train_model


def _features(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(logits, dim=1)
    return torch.cat([probs, nn.functional.one_hot(y, logits.shape[1]).to(probs.dtype)], dim=1)


@defense("adversarial_regularization")
class AdversarialRegularization(Defense):
    description = "min-max training against a membership inference model, weight lam (Nasr et al. 2018)"
    uses_reference = True

    def __init__(self, lam: float = 1.0, attack_steps: int = 1, attack_hidden: int = 64, attack_lr: float = 1e-3):
        if lam < 0:
            raise ValueError("lam must be >= 0")
        if attack_steps < 1 or attack_hidden < 1:
            raise ValueError("attack_steps and attack_hidden must be at least 1")
        if attack_lr <= 0:
            raise ValueError("attack_lr must be > 0")
        self.lam = lam
        self.attack_steps = attack_steps
        self.attack_hidden = attack_hidden
        self.attack_lr = attack_lr

    def train(self, net, x, y, training, seed, device, aux):
        device = resolve_device(device)
        net = require_torch(net, "adversarial_regularization").to(device)
        x, y, rx, ry = reference_data(x, y, aux, seed, "adversarial_regularization")
        rx_t = to_tensor(rx, device)
        ry_t = torch.from_numpy(np.asarray(ry, dtype=np.int64)).to(device)
        with torch.no_grad():
            k = int(net.eval()(rx_t[:1]).shape[1])
        with torch_rng(int(seed) ^ 0xA7, device):
            h = nn.Sequential(nn.Linear(2 * k, self.attack_hidden), nn.ReLU(),
                              nn.Linear(self.attack_hidden, 1)).to(device)
        h_opt = torch.optim.Adam(h.parameters(), lr=self.attack_lr)
        gen = torch.Generator().manual_seed(int(seed) ^ 0xA8)
        bce = nn.functional.binary_cross_entropy_with_logits
        stats = {"gain": 0.0}

        def loss_fn(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            member_feats = _features(logits.detach(), yb)
            for _ in range(self.attack_steps):
                pick = torch.randint(len(ry_t), (len(yb),), generator=gen).to(device)
                with torch.no_grad():
                    ref_feats = _features(net(rx_t[pick]), ry_t[pick])
                out_in, out_ref = h(member_feats), h(ref_feats)
                h_loss = bce(out_in, torch.ones_like(out_in)) + bce(out_ref, torch.zeros_like(out_ref))
                h_opt.zero_grad(set_to_none=True)
                h_loss.backward()
                h_opt.step()
            # the classifier's step: h's log-probability of "member" on the training batch, weighted by λ
            gain = nn.functional.logsigmoid(h(_features(logits, yb))).mean()
            stats["gain"] = float(gain.detach())
            return nn.functional.cross_entropy(logits, yb) + self.lam * gain

        train_model(net, x, y, training, seed, device, loss_fn=loss_fn)
        for p in h.parameters():  # h took gradients through the classifier's loss; they are not h's step
            p.grad = None
        self.info_ = {"final_attack_gain": round(stats["gain"], 4)}
        return net.eval()
